"""GPT-2 (Radford et al., 2019) as a transformers v5 PreTrainedModel.

Pre-LayerNorm blocks, learned positions, tanh-GELU MLP, an LM head tied to the token embedding, and the scaled
residual init. Parameter names follow OpenAI's checkpoints (``transformer.wte``, ``h.N.attn.c_attn``, ...), so
converting from stock GPT-2 is a transpose of its Conv1D weights. This file travels to the Hub with every release
(``trust_remote_code``): it imports only torch, transformers and the configuration next to it.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GenerationMixin, PreTrainedModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.cache_utils import Cache, DynamicCache
from transformers.masking_utils import create_causal_mask
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutputWithPast, CausalLMOutputWithPast
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.utils.deprecation import deprecate_kwarg

from .configuration_hf_gpt2 import HfGPT2Config


def eager_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference attention: softmax(q kᵀ · scaling + mask) v. Inputs (B, nh, T, hs); output (B, T, nh, hs)."""
    scores = torch.matmul(query, key.transpose(-1, -2)) * scaling  # (B, nh, T, S)
    if attention_mask is not None:
        scores = scores + attention_mask  # additive 4D mask from create_causal_mask: 0 or -inf
    probs = F.softmax(scores, dim=-1, dtype=torch.float32).to(value.dtype)
    probs = F.dropout(probs, p=dropout, training=module.training)
    out = torch.matmul(probs, value).transpose(1, 2)  # (B, T, nh, hs)
    return out, probs


class LinearCrossEntropy(torch.autograd.Function):
    """Summed cross-entropy of ``hidden @ weight.T`` against ``targets``, one chunk of rows at a time.

    Liger / "cut cross-entropy" style: each chunk's logits are built, turned into the chunk's loss and, in the same
    forward, into the gradients wrt ``hidden`` and ``weight``; then they are dropped. Neither pass ever holds more
    than ``chunk_size × V`` logits, and the backward only scales the two stored gradients.
    """

    @staticmethod
    def forward(
        ctx,
        hidden: torch.Tensor,
        weight: torch.Tensor,
        targets: torch.Tensor,
        denominator: torch.Tensor,
        vocab_size: int,
        chunk_size: int,
        compute_dtype: torch.dtype,
    ) -> torch.Tensor:
        # hidden (N, C), weight (Vp, C) with Vp >= vocab_size, targets (N,) with -100 = ignored. The gradients are
        # kept as sums over the valid rows; backward applies grad_loss / denominator to them in one pass.
        need_hidden, need_weight = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        h, w = hidden.to(compute_dtype), weight.to(compute_dtype)  # no-ops in fp32; autocast's casts under bf16
        valid = targets != -100
        safe_targets = torch.where(valid, targets, 0).unsqueeze(1)  # (N, 1)
        keep = valid.unsqueeze(1).to(compute_dtype)  # (N, 1): 1 for rows that count, 0 for ignored ones (exact)
        grad_hidden = torch.empty_like(h) if need_hidden else None
        grad_weight = torch.empty_like(weight, dtype=torch.float32) if need_weight else None
        loss = torch.zeros((), dtype=torch.float32, device=hidden.device)
        n = min(chunk_size, h.shape[0])
        logits_buffer = torch.empty(n, w.shape[0], dtype=compute_dtype, device=h.device)  # reused by every chunk
        probs_buffer = torch.empty(n, w.shape[0], dtype=torch.float32, device=h.device)
        with torch.autocast(hidden.device.type, enabled=False):
            for start in range(0, h.shape[0], chunk_size):
                rows = slice(start, start + chunk_size)
                h_rows, keep_rows, t_rows = h[rows], keep[rows], safe_targets[rows]
                logits = torch.mm(h_rows, w.t(), out=logits_buffer[: len(h_rows)])  # (n, Vp)
                if w.shape[0] > vocab_size:
                    logits[:, vocab_size:] = float("-inf")  # padding rows never score
                # one row-wise kernel: each row is read once and its softmax sums stay in cache
                log_probs = torch.log_softmax(logits, dim=-1, dtype=torch.float32, out=probs_buffer[: len(h_rows)])
                loss -= (log_probs.gather(1, t_rows) * keep_rows).sum()
                if grad_hidden is None and grad_weight is None:
                    continue
                ones = torch.ones_like(log_probs[:, :1])
                grad_logits = log_probs.exp_().scatter_add_(1, t_rows, -ones).to(compute_dtype)  # p - onehot
                # the row mask goes on the small (n, C) factors, never over the (n, V) matrix
                if grad_hidden is not None:
                    grad_hidden[rows] = (grad_logits @ w).mul_(keep_rows)
                if grad_weight is None:
                    continue
                if start == 0 and compute_dtype == torch.float32:  # first chunk writes the buffer: no zero fill
                    torch.mm(grad_logits.t(), h_rows * keep_rows, out=grad_weight)
                elif start == 0:
                    grad_weight.copy_(grad_logits.t() @ (h_rows * keep_rows))
                elif compute_dtype == torch.float32:
                    grad_weight.addmm_(grad_logits.t(), h_rows * keep_rows)
                else:  # bf16 / fp16 chunk product, accumulated in fp32
                    grad_weight.add_(grad_logits.t() @ (h_rows * keep_rows))
        # ctx attributes, not save_for_backward: backward drops them, so autograd can adopt the (Vp, C) gradient as
        # weight.grad instead of copying it
        ctx.grad_hidden = grad_hidden.to(hidden.dtype) if grad_hidden is not None else None
        ctx.grad_weight = grad_weight.to(weight.dtype) if grad_weight is not None else None
        ctx.save_for_backward(denominator)
        return loss / denominator

    @staticmethod
    def backward(ctx, grad_loss: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        (denominator,) = ctx.saved_tensors
        grad_hidden, grad_weight = ctx.grad_hidden, ctx.grad_weight
        if grad_hidden is None and grad_weight is None and any(ctx.needs_input_grad[:2]):
            raise RuntimeError("LinearCrossEntropy: backward through the same loss twice is not supported")
        ctx.grad_hidden = ctx.grad_weight = None
        factor = grad_loss / denominator
        if grad_hidden is not None:
            grad_hidden = grad_hidden * factor.to(grad_hidden.dtype)
        if grad_weight is not None:
            grad_weight = grad_weight.mul_(factor)  # in place: no second (Vp, C) buffer
        return grad_hidden, grad_weight, None, None, None, None, None


def _default_loss_chunk_size(device: torch.device) -> int:
    # CPU: 256 rows keep a chunk (51 MB at V=50304) near the caches and were fastest on 2 cores; GPUs want fewer,
    # larger kernels.
    return 256 if device.type == "cpu" else 4096


def linear_cross_entropy(
    hidden_states: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor | None,
    vocab_size: int,
    chunk_size: int,
    num_items_in_batch: torch.Tensor | int | None = None,
    shift_labels: torch.Tensor | None = None,
) -> torch.Tensor:
    """transformers' ``ForCausalLMLoss`` of ``hidden_states @ weight[:vocab_size].T``, without the (B, T, V) logits.

    Args:
        hidden_states: (B, T, C) final hidden states.
        weight: (Vp, C) LM head; rows from ``vocab_size`` on are padding and never score.
        labels: (B, T) ids aligned with the inputs (shifted here, as transformers does); -100 is ignored.
        vocab_size: the real vocabulary size.
        chunk_size: rows (tokens) per chunk.
        num_items_in_batch: divide the summed loss by this (gradient accumulation) instead of the valid-token count.
        shift_labels: (B, T) already-shifted targets; replaces ``labels``.

    Returns:
        The mean loss over the valid tokens (or the sum over ``num_items_in_batch``), fp32.
    """
    if shift_labels is None:
        shift_labels = F.pad(labels, (0, 1), value=-100)[..., 1:]  # (B, T): position t predicts t + 1
    targets = shift_labels.reshape(-1).to(hidden_states.device)  # (N,)
    hidden = hidden_states.reshape(-1, hidden_states.shape[-1])  # (N, C), a view when contiguous
    if num_items_in_batch is None:
        denominator = (targets != -100).sum().float()
    else:
        denominator = torch.as_tensor(num_items_in_batch, device=hidden.device).float()
    device_type = hidden.device.type
    autocast = torch.is_autocast_enabled(device_type)
    compute_dtype = torch.get_autocast_dtype(device_type) if autocast else hidden.dtype
    return LinearCrossEntropy.apply(hidden, weight, targets, denominator, vocab_size, chunk_size, compute_dtype)


def _activation(name: str) -> nn.Module:
    # GPT-2's "gelu_new" is the tanh approximation; as one fused kernel it saves memory and time over the op chain.
    if name in ("gelu_new", "gelu_pytorch_tanh"):
        return nn.GELU(approximate="tanh")
    return ACT2FN[name]


class HfGPT2Attention(nn.Module):
    """Causal multi-head self-attention through the transformers attention interface (sdpa, eager, flash, flex)."""

    def __init__(self, config: HfGPT2Config, layer_idx: int) -> None:
        super().__init__()
        self.config = config
        self.layer_idx = layer_idx
        self.n_head = config.n_head
        self.head_dim = config.n_embd // config.n_head
        self.scaling = self.head_dim**-0.5 if config.scale_attn_weights else 1.0
        self.is_causal = True
        self.attention_dropout = config.attn_pdrop
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd)
        self.c_proj.is_residual_projection = True
        self.resid_dropout = nn.Dropout(config.resid_pdrop)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        cache: Cache | None = None,
        **kwargs,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        B, T, C = hidden_states.shape
        q, k, v = self.c_attn(hidden_states).split(C, dim=-1)  # 3 × (B, T, C)
        q, k, v = (t.view(B, T, self.n_head, self.head_dim).transpose(1, 2) for t in (q, k, v))  # (B, nh, T, hs)
        if cache is not None:
            k, v = cache.update(k, v, self.layer_idx)  # (B, nh, S, hs), S = past + T
        attention: Callable = ALL_ATTENTION_FUNCTIONS.get_interface(
            self.config._attn_implementation, eager_attention_forward
        )
        out, weights = attention(
            self,
            q,
            k,
            v,
            attention_mask,
            dropout=self.attention_dropout if self.training else 0.0,
            scaling=self.scaling,
            **kwargs,
        )  # (B, T, nh, hs)
        out = out.reshape(B, T, C)
        return self.resid_dropout(self.c_proj(out)), weights


class HfGPT2MLP(nn.Module):
    """Position-wise feed-forward: n_embd → n_inner → n_embd with tanh-GELU."""

    def __init__(self, config: HfGPT2Config) -> None:
        super().__init__()
        inner = config.n_inner if config.n_inner is not None else 4 * config.n_embd
        self.c_fc = nn.Linear(config.n_embd, inner)
        self.act = _activation(config.activation_function)
        self.c_proj = nn.Linear(inner, config.n_embd)
        self.c_proj.is_residual_projection = True
        self.dropout = nn.Dropout(config.resid_pdrop)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(self.act(self.c_fc(hidden_states))))


class HfGPT2Block(GradientCheckpointingLayer):
    """x + attn(ln_1(x)), then x + mlp(ln_2(x)): GPT-2's pre-LayerNorm block."""

    def __init__(self, config: HfGPT2Config, layer_idx: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.attn = HfGPT2Attention(config, layer_idx)
        self.ln_2 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.mlp = HfGPT2MLP(config)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        cache: Cache | None = None,
        use_cache: bool = False,
        **kwargs,
    ) -> torch.Tensor:
        attn_out, _ = self.attn(self.ln_1(hidden_states), attention_mask=attention_mask, cache=cache, **kwargs)
        hidden_states = hidden_states + attn_out
        return hidden_states + self.mlp(self.ln_2(hidden_states))


class HfGPT2PreTrainedModel(PreTrainedModel):
    """Weight init, attention-implementation flags and checkpoint conventions shared by the hf_gpt2 models."""

    config_class = HfGPT2Config
    config: HfGPT2Config
    base_model_prefix = "transformer"
    supports_gradient_checkpointing = True
    _no_split_modules = ["HfGPT2Block"]
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True
    _can_compile_fullgraph = True
    _keys_to_ignore_on_load_unexpected = [r"attn\.bias", r"attn\.masked_bias"]

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            # GPT-2 paper: "We scale the weights of residual layers at initialization by a factor of 1/√N where N is
            # the number of residual layers." Each block has two residual branches (attention and MLP).
            scale = math.sqrt(2 * self.config.n_layer) if getattr(module, "is_residual_projection", False) else 1.0
            init.normal_(module.weight, mean=0.0, std=std / scale)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            init.normal_(module.weight, mean=0.0, std=std)
        elif isinstance(module, nn.LayerNorm):
            init.ones_(module.weight)
            init.zeros_(module.bias)


class HfGPT2Model(HfGPT2PreTrainedModel):
    """The GPT-2 transformer without a head: embeddings, blocks and the final LayerNorm."""

    def __init__(self, config: HfGPT2Config) -> None:
        super().__init__(config)
        self.wte = nn.Embedding(config.padded_vocab_size, config.n_embd)  # rows past vocab_size: alignment only
        self.wpe = nn.Embedding(config.n_positions, config.n_embd)
        self.drop = nn.Dropout(config.embd_pdrop)
        self.h = nn.ModuleList([HfGPT2Block(config, layer_idx=i) for i in range(config.n_layer)])
        self.ln_f = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.gradient_checkpointing = False
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.wte

    def set_input_embeddings(self, new_embeddings: nn.Embedding) -> None:
        self.wte = new_embeddings

    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPast:
        """Run the blocks over ``input_ids`` (B, T) or ``inputs_embeds`` (B, T, C).

        Args:
            input_ids: token ids; give either these or ``inputs_embeds``.
            cache: KV cache of earlier positions (a ``DynamicCache``); created when ``use_cache`` and None.
            attention_mask: (B, S) with 1 for real tokens and 0 for padding (left padding supported), or a 4D mask.
            position_ids: (B, T) positions; default ``arange(T) + cache length``.
            inputs_embeds: precomputed token embeddings.
            use_cache: return the KV cache (default ``config.use_cache`` in eval mode; off in training mode, where a
                cache only costs copies, and under gradient checkpointing).
        """
        for key in ("output_attentions", "output_hidden_states", "return_dict"):
            kwargs.pop(key, None)
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids or inputs_embeds")
        if input_ids is not None:
            inputs_embeds = self.wte(input_ids)  # (B, T, C)
        use_cache = (self.config.use_cache and not self.training) if use_cache is None else use_cache
        if self.gradient_checkpointing and self.training:
            use_cache = False
        if use_cache and cache is None:
            cache = DynamicCache(config=self.config)
        if not use_cache:
            cache = None
        if position_ids is None:
            past = cache.get_seq_length() if cache is not None else 0
            T = inputs_embeds.shape[1]
            if past + T > self.config.n_positions:
                raise ValueError(
                    f"sequence length {past + T} (cached {past} + new {T}) exceeds the model's "
                    f"n_positions={self.config.n_positions}; truncate the input to at most "
                    f"{self.config.n_positions} tokens"
                )
            position_ids = (torch.arange(T, device=inputs_embeds.device) + past).unsqueeze(0)
        mask = create_causal_mask(
            config=self.config,
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            cache=cache,
            position_ids=position_ids,
        )
        hidden_states = self.drop(inputs_embeds + self.wpe(position_ids))  # (B, T, C)
        for block in self.h:
            # hidden_states goes positionally: the checkpointing wrapper only handles kwargs it knows.
            hidden_states = block(
                hidden_states,
                attention_mask=mask,
                cache=cache,
                use_cache=use_cache,
                position_ids=position_ids,
                **kwargs,
            )
        return BaseModelOutputWithPast(last_hidden_state=self.ln_f(hidden_states), cache=cache)


class HfGPT2ForCausalLM(HfGPT2PreTrainedModel, GenerationMixin):
    """GPT-2 with its language-modelling head (tied to ``transformer.wte``)."""

    _tied_weights_keys = {"lm_head.weight": "transformer.wte.weight"}

    def __init__(self, config: HfGPT2Config) -> None:
        super().__init__(config)
        self.transformer = HfGPT2Model(config)
        self.lm_head = nn.Linear(config.n_embd, config.padded_vocab_size, bias=False)
        self.post_init()

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def set_output_embeddings(self, new_embeddings: nn.Linear) -> None:
        self.lm_head = new_embeddings

    def resize_token_embeddings(
        self, new_num_tokens: int | None = None, pad_to_multiple_of: int | None = None, mean_resizing: bool = True
    ) -> nn.Embedding:
        """Resize to ``new_num_tokens`` real tokens; the matrices keep ``config.vocab_pad_multiple`` padding."""
        if new_num_tokens is None:
            return super().resize_token_embeddings(None, pad_to_multiple_of, mean_resizing)
        multiple = math.lcm(self.config.vocab_pad_multiple, pad_to_multiple_of or 1)
        embeddings = super().resize_token_embeddings(-(-new_num_tokens // multiple) * multiple, None, mean_resizing)
        self.config.vocab_size = self.vocab_size = new_num_tokens
        return embeddings

    def _uses_fused_loss(self, labels: torch.Tensor | None, logits_to_keep: int | torch.Tensor) -> bool:
        """Training with labels: the chunked LM-head + loss, which returns no logits (``config.loss_chunk_size``)."""
        return (
            labels is not None
            and self.training
            and torch.is_grad_enabled()
            and self.config.loss_chunk_size != 0
            and isinstance(logits_to_keep, int)
            and logits_to_keep == 0
            and type(self.lm_head) is nn.Linear  # a wrapped head (LoRA, quantised) keeps its own forward
        )

    def _logits(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """(B, T', C) → (B, T', vocab_size): the padding rows of the head are never computed."""
        if type(self.lm_head) is nn.Linear:
            return F.linear(hidden_states, self.lm_head.weight[: self.config.vocab_size])  # row slice: no copy
        return self.lm_head(hidden_states)[..., : self.config.vocab_size]

    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        **kwargs,
    ) -> CausalLMOutputWithPast:
        """Logits for every (or the last ``logits_to_keep``) position, and the loss when ``labels`` are given.

        In training (``model.train()``, gradients on, ``labels`` given, ``config.loss_chunk_size > 0``) the loss comes
        from the chunked LM-head + cross-entropy and ``logits`` is None: the (B, T, V) logits are never built. Eval
        mode, ``torch.no_grad()`` or ``config.loss_chunk_size = 0`` return logits (and the same loss).

        Args:
            labels: (B, T) target ids aligned with ``input_ids`` (shifted inside, as in transformers); -100 is ignored.
            logits_to_keep: keep logits for the last N positions only (0 keeps all), or a 1D tensor of indices.
            num_items_in_batch: (keyword) divide the summed loss by this instead of the valid-token count, as
                transformers' Trainer does for gradient accumulation.
            (other arguments as in :meth:`HfGPT2Model.forward`)
        """
        loss_kwargs = {key: kwargs.pop(key) for key in ("num_items_in_batch", "shift_labels") if key in kwargs}
        out = self.transformer(
            input_ids,
            cache=cache,
            attention_mask=attention_mask,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            **kwargs,
        )
        hidden_states = out.last_hidden_state  # (B, T, C)
        if self._uses_fused_loss(labels, logits_to_keep):
            loss = linear_cross_entropy(
                hidden_states,
                self.lm_head.weight,
                labels,
                self.config.vocab_size,
                self.config.loss_chunk_size or _default_loss_chunk_size(hidden_states.device),
                **loss_kwargs,
            )
            return CausalLMOutputWithPast(loss=loss, logits=None, cache=out.cache)
        keep = slice(-logits_to_keep, None) if isinstance(logits_to_keep, int) else logits_to_keep
        logits = self._logits(hidden_states[:, keep, :])  # (B, T', V)
        loss = None
        if labels is not None:
            loss = self.loss_function(logits, labels, vocab_size=self.config.vocab_size, **loss_kwargs, **kwargs)
        return CausalLMOutputWithPast(loss=loss, logits=logits, cache=out.cache)


__all__ = ["HfGPT2PreTrainedModel", "HfGPT2Model", "HfGPT2ForCausalLM"]

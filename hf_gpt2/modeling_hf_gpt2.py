"""GPT-2 (Radford et al., 2019) as a transformers v5 PreTrainedModel.

Pre-LayerNorm blocks, learned positions, tanh-GELU MLP, an LM head tied to the token embedding, and the scaled
residual init. Parameter names follow OpenAI's checkpoints (``transformer.wte``, ``h.N.attn.c_attn``, ...), so
converting from stock GPT-2 is a transpose of its Conv1D weights. This file travels to the Hub with every release
(``trust_remote_code``): it imports only torch, transformers and the files next to it (the configuration and the
fused loss kernel).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GenerationMixin, PreTrainedModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.cache_utils import Cache, DynamicCache
from transformers.conversion_mapping import register_checkpoint_conversion_mapping
from transformers.core_model_loading import ConversionOps, WeightConverter
from transformers.masking_utils import create_causal_mask
from transformers.modeling_layers import (
    GenericForQuestionAnswering,
    GenericForSequenceClassification,
    GenericForTokenClassification,
    GradientCheckpointingLayer,
)
from transformers.modeling_outputs import BaseModelOutputWithPast, CausalLMOutputWithPast
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS, slice_logits_to_keep
from transformers.utils import can_return_tuple
from transformers.utils.deprecation import deprecate_kwarg
from transformers.utils.output_capturing import OutputRecorder, capture_outputs

from .configuration_hf_gpt2 import HfGPT2Config
from .fused_loss import linear_cross_entropy


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
    # output_hidden_states / output_attentions are recorded by hooks on these modules (transformers' capture_outputs)
    _can_record_outputs = {
        "hidden_states": HfGPT2Block,
        "attentions": OutputRecorder(HfGPT2Attention, index=1),
    }

    def save_pretrained(self, save_directory: str | os.PathLike, *args, **kwargs) -> None:
        """``PreTrainedModel.save_pretrained``; the config's ``auto_map`` names every hf_gpt2 class, so a release of
        any head loads as any other (``AutoModel``, ``AutoModelForSequenceClassification``, ...) through
        ``trust_remote_code``."""
        if self._auto_class is not None:
            module = type(self).__module__.rsplit(".", 1)[-1]
            auto_map = dict(getattr(self.config, "auto_map", None) or {})
            auto_map.update({auto: f"{module}.{name}" for auto, name in AUTO_CLASS_NAMES.items()})
            self.config.auto_map = auto_map
        return super().save_pretrained(save_directory, *args, **kwargs)

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
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
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

    @capture_outputs
    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
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
            token_type_ids: (B, T) ids whose token embeddings are added to the input, as GPT-2 does.
            position_ids: (B, T) positions; default ``arange(T) + cache length``.
            inputs_embeds: precomputed token embeddings.
            use_cache: return the KV cache (default ``config.use_cache`` in eval mode; off in training mode, where a
                cache only costs copies, and under gradient checkpointing).
            output_hidden_states, output_attentions, return_dict: (keywords, default from the config) add the
                embeddings and every block's output / every layer's attention probabilities (eager attention
                only), or return a tuple, exactly as stock GPT-2 does.
        """
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids or inputs_embeds")
        if input_ids is not None:
            inputs_embeds = self.wte(input_ids)  # (B, T, C)
        B, T = inputs_embeds.shape[:2]
        use_cache = (self.config.use_cache and not self.training) if use_cache is None else use_cache
        if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
            use_cache = False
        if use_cache and cache is None:
            cache = DynamicCache(config=self.config)
        if not use_cache:
            cache = None
        if position_ids is None:
            past = cache.get_seq_length() if cache is not None else 0
            if past + T > self.config.n_positions:
                raise ValueError(
                    f"sequence length {past + T} (cached {past} + new {T}) exceeds the model's "
                    f"n_positions={self.config.n_positions}; truncate the input to at most "
                    f"{self.config.n_positions} tokens"
                )
            position_ids = (torch.arange(T, device=inputs_embeds.device) + past).unsqueeze(0)
        if attention_mask is not None and attention_mask.ndim < 4:
            attention_mask = attention_mask.view(B, -1)
        mask = create_causal_mask(
            config=self.config,
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            cache=cache,
            position_ids=position_ids,
        )
        hidden_states = inputs_embeds + self.wpe(position_ids)  # (B, T, C)
        if token_type_ids is not None:
            hidden_states = hidden_states + self.wte(token_type_ids.view(B, -1))  # GPT-2 reuses the token table
        hidden_states = self.drop(hidden_states)
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


class HfGPT2LMHead(nn.Linear):
    """The LM head: ``(B, T, C) → (B, T, vocab_size)`` logits, or the loss alone through the chunked kernel.

    The loss runs inside this module's ``forward``, so hooks that manage the weight (accelerate's offload and
    device-map hooks, any forward pre-hook) have it in place and on the right device, as for the logits.
    """

    def forward(
        self,
        hidden_states: torch.Tensor,
        labels: torch.Tensor | None = None,
        shift_labels: torch.Tensor | None = None,
        num_items_in_batch: torch.Tensor | int | None = None,
        chunk_size: int | None = None,
        pad_multiple: int = 1,
    ) -> torch.Tensor:
        """Logits; with ``labels`` or ``shift_labels``, the causal-LM loss without logits (see ``fused_loss``)."""
        if labels is None and shift_labels is None:
            return super().forward(hidden_states)
        return linear_cross_entropy(
            hidden_states,
            self.weight,
            labels,
            shift_labels=shift_labels,
            num_items_in_batch=num_items_in_batch,
            chunk_size=chunk_size,
            pad_multiple=pad_multiple,
        )


class HfGPT2ForCausalLM(HfGPT2PreTrainedModel, GenerationMixin):
    """GPT-2 with its language-modelling head (tied to ``transformer.wte``)."""

    _tied_weights_keys = {"lm_head.weight": "transformer.wte.weight"}

    def __init__(self, config: HfGPT2Config) -> None:
        super().__init__(config)
        self.transformer = HfGPT2Model(config)
        self.lm_head = HfGPT2LMHead(config.n_embd, config.vocab_size, bias=False)
        self.post_init()

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def set_output_embeddings(self, new_embeddings: nn.Module) -> None:
        if type(new_embeddings) is nn.Linear and new_embeddings.bias is None:
            # resize_token_embeddings builds a plain nn.Linear (and may have hooked it already): give it this
            # head's class, which only adds the loss-without-logits path, so that path survives a resize
            new_embeddings.__class__ = HfGPT2LMHead
        self.lm_head = new_embeddings

    @can_return_tuple
    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        skip_logits: bool = False,
        **kwargs,
    ) -> CausalLMOutputWithPast:
        """Logits for every (or the last ``logits_to_keep``) position, and the loss when ``labels`` are given.

        By default the output is stock GPT-2's: logits, and with ``labels`` the same loss. ``skip_logits=True`` (with
        ``labels``) asks for the loss alone: it comes from the chunked LM-head + cross-entropy of
        ``hf_gpt2.fused_loss``, the (B, T, V) logits are never built and ``logits`` is None. That is what training
        loops want (hf_gpt2's own loop asks for it); ``config.loss_chunk_size`` sets its rows per chunk (0: the loss
        from full logits, which are then dropped).

        Args:
            labels: (B, T) target ids aligned with ``input_ids`` (shifted inside, as in transformers); -100 is ignored.
            logits_to_keep: keep logits for the last N positions only (0 keeps all), or a tensor of indices.
            skip_logits: return the loss without logits (needs ``labels``).
            num_items_in_batch: (keyword) divide the summed loss by this instead of the valid-token count, as
                transformers' Trainer does for gradient accumulation.
            shift_labels: (keyword) targets already aligned with the positions; replace the shift of ``labels``.
            (other arguments as in :meth:`HfGPT2Model.forward`)
        """
        if skip_logits and labels is None:
            raise ValueError("skip_logits=True returns only the loss: pass labels (or leave skip_logits False)")
        loss_kwargs = {key: kwargs.pop(key) for key in ("num_items_in_batch", "shift_labels") if key in kwargs}
        out = self.transformer(
            input_ids,
            cache=cache,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            return_dict=True,  # a config with return_dict=False still gets its tuple, from can_return_tuple
            **kwargs,
        )
        hidden_states = out.last_hidden_state  # (B, T, C)
        if skip_logits:
            logits, loss = None, self._loss_without_logits(hidden_states, labels, **loss_kwargs)
        else:
            logits = self.lm_head(slice_logits_to_keep(hidden_states, logits_to_keep))  # (B, T', V)
            loss = None
            if labels is not None:
                loss = self.loss_function(logits, labels, vocab_size=self.config.vocab_size, **loss_kwargs, **kwargs)
        return CausalLMOutputWithPast(
            loss=loss, logits=logits, cache=out.cache, hidden_states=out.hidden_states, attentions=out.attentions
        )

    def _loss_without_logits(self, hidden_states: torch.Tensor, labels: torch.Tensor, **loss_kwargs) -> torch.Tensor:
        """The chunked LM-head + loss; a wrapped head (LoRA, quantised) or ``loss_chunk_size=0`` uses full logits."""
        if self.config.loss_chunk_size == 0 or not isinstance(self.lm_head, HfGPT2LMHead):
            logits = self.lm_head(hidden_states)
            return self.loss_function(logits, labels, vocab_size=self.config.vocab_size, **loss_kwargs)
        return self.lm_head(
            hidden_states,
            labels,
            chunk_size=self.config.loss_chunk_size,
            pad_multiple=self.config.vocab_pad_multiple,
            **loss_kwargs,
        )


class HfGPT2ForSequenceClassification(GenericForSequenceClassification, HfGPT2PreTrainedModel):
    """GPT-2 with a linear score on the last non-padding token (reward models, classification)."""

    base_model_prefix = "transformer"

    def __init__(self, config: HfGPT2Config) -> None:
        HfGPT2PreTrainedModel.__init__(self, config)  # the generic head would build its base through AutoModel
        self.num_labels = config.num_labels
        self.transformer = HfGPT2Model(config)
        self.score = nn.Linear(config.n_embd, self.num_labels, bias=False)
        self.post_init()


class HfGPT2ForTokenClassification(GenericForTokenClassification, HfGPT2PreTrainedModel):
    """GPT-2 with a linear classifier on every token (``score``; stock GPT-2 names it ``classifier``)."""

    base_model_prefix = "transformer"

    def __init__(self, config: HfGPT2Config) -> None:
        HfGPT2PreTrainedModel.__init__(self, config)
        self.num_labels = config.num_labels
        self.transformer = HfGPT2Model(config)
        dropout = getattr(config, "classifier_dropout", None)
        dropout = getattr(config, "hidden_dropout", None) if dropout is None else dropout
        self.dropout = nn.Dropout(0.1 if dropout is None else dropout)  # stock GPT-2's rule and default
        self.score = nn.Linear(config.n_embd, config.num_labels)
        self.post_init()


class HfGPT2ForQuestionAnswering(GenericForQuestionAnswering, HfGPT2PreTrainedModel):
    """GPT-2 with a span head: start and end logits for every token."""

    base_model_prefix = "transformer"

    def __init__(self, config: HfGPT2Config) -> None:
        HfGPT2PreTrainedModel.__init__(self, config)
        self.transformer = HfGPT2Model(config)
        self.qa_outputs = nn.Linear(config.n_embd, 2)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.transformer.wte

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.transformer.wte = value


# -- loading releases of earlier versions ----------------------------------------------------------------------------


class _StripVocabPadding(ConversionOps):
    """Loading: keep the first ``config.vocab_size`` rows of a vocabulary matrix.

    Releases written before the padding moved into the loss kernel store ``transformer.wte.weight`` (and an untied
    ``lm_head.weight``) with ``vocab_size`` rounded up to ``vocab_pad_multiple`` rows (50257 → 50304); the rows past
    ``vocab_size`` were never scored. Only that exact size is cut; saving writes the matrices as they are.
    """

    @torch.no_grad()
    def convert(self, input_dict, source_patterns, target_patterns, config=None, **kwargs):
        tensor = next(iter(input_dict.values()))
        tensor = tensor[0] if isinstance(tensor, list) else tensor
        V, multiple = config.vocab_size, config.vocab_pad_multiple
        if len(tensor) > V and len(tensor) == -(-V // multiple) * multiple:  # exactly the old padded size
            tensor = tensor[:V]
        return {target_patterns[0]: tensor}  # any other size is reported as a mismatch, as usual

    @property
    def reverse_op(self) -> ConversionOps:
        return _SaveAsIs()


class _SaveAsIs(ConversionOps):
    """Saving: the matrices as they are (``vocab_size`` rows)."""

    def convert(self, input_dict, source_patterns, target_patterns, **kwargs):
        return {target_patterns[0]: next(iter(input_dict.values()))}

    @property
    def reverse_op(self) -> ConversionOps:
        return _StripVocabPadding()


register_checkpoint_conversion_mapping(
    HfGPT2Config.model_type,
    [
        WeightConverter(r"wte\.weight", "wte.weight", operations=[_StripVocabPadding()]),
        WeightConverter(r"lm_head\.weight", "lm_head.weight", operations=[_StripVocabPadding()]),
    ],
    overwrite=True,  # this file is imported once per package import and once per trust_remote_code module copy
)


AUTO_CLASS_NAMES = {
    "AutoModel": "HfGPT2Model",
    "AutoModelForCausalLM": "HfGPT2ForCausalLM",
    "AutoModelForSequenceClassification": "HfGPT2ForSequenceClassification",
    "AutoModelForTokenClassification": "HfGPT2ForTokenClassification",
    "AutoModelForQuestionAnswering": "HfGPT2ForQuestionAnswering",
}
"""The transformers Auto class of each hf_gpt2 model class."""

__all__ = [
    "HfGPT2PreTrainedModel",
    "HfGPT2Model",
    "HfGPT2ForCausalLM",
    "HfGPT2ForSequenceClassification",
    "HfGPT2ForTokenClassification",
    "HfGPT2ForQuestionAnswering",
]

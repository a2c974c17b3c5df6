"""HfGPT2Config: GPT-2's hyperparameters under GPT-2's own field names, registered as model_type "hf_gpt2".

This file travels to the Hub with every release (``trust_remote_code``): it imports only transformers and, relatively,
``model_fields.py`` (the rules of every field, shared with the recipe), which transformers copies beside it.
"""

from __future__ import annotations

from transformers import PreTrainedConfig

from .model_fields import CHECKED_FIELDS, field_problems


class HfGPT2Config(PreTrainedConfig):
    """Configuration of an hf_gpt2 model; the defaults are GPT-2 124M.

    Args:
        vocab_size: number of token ids the model predicts (GPT-2: 50257).
        n_positions: longest sequence the learned position table covers.
        n_embd: width of the residual stream.
        n_layer: number of transformer blocks.
        n_head: attention heads per block; must divide ``n_embd``.
        n_inner: width of the MLP; ``None`` means ``4 * n_embd``.
        activation_function: MLP activation. ``gelu_new`` (GPT-2's tanh-GELU) runs as one fused kernel.
        resid_pdrop: dropout on each residual branch output.
        embd_pdrop: dropout on the sum of token and position embeddings.
        attn_pdrop: dropout on attention probabilities.
        layer_norm_epsilon: LayerNorm epsilon.
        initializer_range: std of the normal init; residual projections get ``std / sqrt(2 * n_layer)``.
        scale_attn_weights: scale attention scores by ``1 / sqrt(head_dim)`` (GPT-2 does).
        use_cache: return a KV cache from forward by default (generation); training turns it off.
        pad_token_id: the padding id (GPT-2 has none); the sequence-classification head scores each row's last
            token that is not this id.
        tie_word_embeddings: share the LM head with the token embedding (GPT-2 does).
        vocab_pad_multiple: the fused loss kernel lays its chunk of logits out ``vocab_size`` rounded up to a
            multiple of this wide (50257 → 50304 at 128), so its matmuls run on aligned shapes. The embedding, the LM
            head and the logits always have exactly ``vocab_size`` rows / columns. 1 turns the alignment off.
        loss_chunk_size: rows (tokens) per chunk of the fused LM-head + cross-entropy, which a caller asks for
            with ``model(..., labels=..., skip_logits=True)``: the loss without the (B, T, V) logits (``logits`` is
            None). Without ``skip_logits`` the model returns logits and stock GPT-2's loss. ``None`` picks per device:
            256 rows on CPU (fastest on the 2-core benchmark), 4096 on GPUs (fewer, larger kernels); 0 computes the
            skipped-logits loss from full logits.
    """

    model_type = "hf_gpt2"
    keys_to_ignore_at_inference = ["cache"]
    attribute_map = {
        "hidden_size": "n_embd",
        "max_position_embeddings": "n_positions",
        "num_attention_heads": "n_head",
        "num_hidden_layers": "n_layer",
    }

    def __init__(
        self,
        vocab_size: int = 50257,
        n_positions: int = 1024,
        n_embd: int = 768,
        n_layer: int = 12,
        n_head: int = 12,
        n_inner: int | None = None,
        activation_function: str = "gelu_new",
        resid_pdrop: float = 0.1,
        embd_pdrop: float = 0.1,
        attn_pdrop: float = 0.1,
        layer_norm_epsilon: float = 1e-5,
        initializer_range: float = 0.02,
        scale_attn_weights: bool = True,
        use_cache: bool = True,
        bos_token_id: int = 50256,
        eos_token_id: int = 50256,
        pad_token_id: int | None = None,
        tie_word_embeddings: bool = True,
        vocab_pad_multiple: int = 128,
        loss_chunk_size: int | None = None,
        **kwargs,
    ) -> None:
        self.vocab_size = vocab_size
        self.n_positions = n_positions
        self.n_embd = n_embd
        self.n_layer = n_layer
        self.n_head = n_head
        self.n_inner = n_inner
        self.activation_function = activation_function
        self.resid_pdrop = resid_pdrop
        self.embd_pdrop = embd_pdrop
        self.attn_pdrop = attn_pdrop
        self.layer_norm_epsilon = layer_norm_epsilon
        self.initializer_range = initializer_range
        self.scale_attn_weights = scale_attn_weights
        self.use_cache = use_cache
        self.vocab_pad_multiple = vocab_pad_multiple
        self.loss_chunk_size = loss_chunk_size
        self._validate_hf_gpt2()
        super().__init__(
            bos_token_id=bos_token_id,
            eos_token_id=eos_token_id,
            pad_token_id=pad_token_id,
            tie_word_embeddings=tie_word_embeddings,
            **kwargs,
        )

    def _validate_hf_gpt2(self) -> None:
        fields = {name: getattr(self, name) for name in CHECKED_FIELDS}
        problems = field_problems(fields)
        if problems:
            raise ValueError("invalid HfGPT2Config: " + "; ".join(problems))

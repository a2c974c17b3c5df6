"""Stock transformers GPT-2 ⇄ hf_gpt2: OpenAI's weights in, a stock ``GPT2LMHeadModel`` out, identical logits.

Parameter names are the same on both sides; stock GPT-2 stores its projections as Conv1D (in, out) matrices and
hf_gpt2 as nn.Linear (out, in), so conversion transposes those four weights per block and copies the rest.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import torch
from transformers import AutoConfig, GPT2Config, GPT2LMHeadModel

from hf_gpt2.configuration_hf_gpt2 import HfGPT2Config
from hf_gpt2.errors import CheckpointError, ConversionError
from hf_gpt2.modeling_hf_gpt2 import HfGPT2ForCausalLM

logger = logging.getLogger(__name__)
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")

# Stock GPT-2 weights held as Conv1D (in_features, out_features); hf_gpt2 holds them as nn.Linear (out, in).
_CONV1D_SUFFIXES = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
# Vocabulary matrices: hf_gpt2 pads their rows to config.vocab_pad_multiple, stock GPT-2 does not.
_VOCAB_KEYS = ("transformer.wte.weight", "lm_head.weight")
# Config fields shared verbatim by GPT2Config and HfGPT2Config.
SHARED_CONFIG_FIELDS = (
    "vocab_size",
    "n_positions",
    "n_embd",
    "n_layer",
    "n_head",
    "n_inner",
    "activation_function",
    "resid_pdrop",
    "embd_pdrop",
    "attn_pdrop",
    "layer_norm_epsilon",
    "initializer_range",
    "scale_attn_weights",
    "use_cache",
    "bos_token_id",
    "eos_token_id",
    "tie_word_embeddings",
)
# Stock GPT-2 options that change the architecture and that hf_gpt2 does not implement.
_UNSUPPORTED_STOCK_OPTIONS = {
    "add_cross_attention": False,
    "scale_attn_by_inverse_layer_idx": False,
    "reorder_and_upcast_attn": False,
}


def config_from_gpt2(config: GPT2Config, vocab_pad_multiple: int = 1) -> HfGPT2Config:
    """Return the HfGPT2Config equivalent to a stock GPT2Config (by default with GPT-2's unpadded vocab matrices).

    Raises:
        ConversionError: if the stock config uses an option hf_gpt2 does not implement.
    """
    for option, supported in _UNSUPPORTED_STOCK_OPTIONS.items():
        if getattr(config, option, supported) != supported:
            raise ConversionError(
                f"the GPT-2 config sets {option}={getattr(config, option)!r}, which hf_gpt2 does not implement; "
                f"only {option}={supported!r} converts"
            )
    fields = {name: getattr(config, name) for name in SHARED_CONFIG_FIELDS}
    return HfGPT2Config(**fields, vocab_pad_multiple=vocab_pad_multiple)


def config_to_gpt2(config: HfGPT2Config) -> GPT2Config:
    """Return the stock GPT2Config equivalent to an HfGPT2Config."""
    return GPT2Config(**{name: getattr(config, name) for name in SHARED_CONFIG_FIELDS})


def _convert_state_dict(
    source: dict[str, torch.Tensor], target: dict[str, torch.Tensor], direction: str
) -> dict[str, torch.Tensor]:
    """Map ``source`` tensors onto the keys and shapes of ``target``; transpose Conv1D ⇄ Linear weights."""
    missing = [key for key in target if key not in source]
    if missing:
        raise ConversionError(
            f"{direction}: the source has no tensor {missing[0]!r} ({len(missing)} missing in all); "
            "is it a GPT-2 checkpoint with the same number of layers?"
        )
    converted = {}
    for key, want in target.items():
        tensor = source[key]
        if key.endswith(_CONV1D_SUFFIXES):
            tensor = tensor.t()
        if key in _VOCAB_KEYS and tensor.shape[1:] == want.shape[1:] and len(tensor) != len(want):
            tensor = _fit_vocab_rows(tensor, len(want))
        if tuple(tensor.shape) != tuple(want.shape):
            raise ConversionError(
                f"{direction}: tensor {key!r} has shape {tuple(source[key].shape)} in the source but the target "
                f"expects {tuple(want.shape)}{' after transposing' if key.endswith(_CONV1D_SUFFIXES) else ''}"
            )
        converted[key] = tensor.contiguous()
    return converted


def _fit_vocab_rows(tensor: torch.Tensor, rows: int) -> torch.Tensor:
    """Strip vocabulary padding rows (hf_gpt2 → GPT-2) or append zero ones (GPT-2 → hf_gpt2)."""
    if len(tensor) >= rows:
        return tensor[:rows]
    return torch.cat([tensor, tensor.new_zeros(rows - len(tensor), *tensor.shape[1:])])


def _load_stock_gpt2(name_or_path: str | os.PathLike) -> GPT2LMHeadModel:
    _require_source(name_or_path)
    try:
        return GPT2LMHeadModel.from_pretrained(str(name_or_path))
    except OSError as err:
        raise ConversionError(f"could not load a GPT-2 model from {str(name_or_path)!r}: {_first_line(err)}") from err


def from_gpt2(model_or_path: GPT2LMHeadModel | str | os.PathLike, vocab_pad_multiple: int = 1) -> HfGPT2ForCausalLM:
    """Convert a stock ``GPT2LMHeadModel`` (object, folder or Hub id such as ``openai-community/gpt2``) to hf_gpt2.

    The result has the same logits (fp32: max abs difference < 1e-4) and the same greedy generations. With
    ``vocab_pad_multiple`` > 1 its vocabulary matrices get zero padding rows (faster matmuls, same logits).

    Raises:
        ConversionError: if the source is missing, not GPT-2, or a tensor is missing or has the wrong shape.
    """
    stock = model_or_path if isinstance(model_or_path, GPT2LMHeadModel) else _load_stock_gpt2(model_or_path)
    model = HfGPT2ForCausalLM(config_from_gpt2(stock.config, vocab_pad_multiple))
    state = _convert_state_dict(stock.state_dict(), model.state_dict(), "GPT-2 → hf_gpt2")
    model.load_state_dict(state, strict=True)
    model.generation_config = stock.generation_config
    return model.to(next(stock.parameters()).dtype).eval()


def to_gpt2(model: HfGPT2ForCausalLM) -> GPT2LMHeadModel:
    """Convert an hf_gpt2 model to a stock transformers ``GPT2LMHeadModel`` with identical logits."""
    stock = GPT2LMHeadModel(config_to_gpt2(model.config))
    target = {
        key: value for key, value in stock.state_dict().items() if not key.endswith((".attn.bias", "masked_bias"))
    }
    state = _convert_state_dict(model.state_dict(), target, "hf_gpt2 → GPT-2")
    stock.load_state_dict(state, strict=False)
    stock.generation_config = model.generation_config
    return stock.to(next(model.parameters()).dtype).eval()


def load_causal_lm(name_or_path: str | os.PathLike) -> HfGPT2ForCausalLM:
    """Load an hf_gpt2 release, a stock GPT-2 folder or a Hub id as an ``HfGPT2ForCausalLM``.

    Raises:
        CheckpointError: if the folder is missing or holds neither hf_gpt2 nor GPT-2.
    """
    _require_source(name_or_path)
    try:
        config = AutoConfig.from_pretrained(str(name_or_path))
    except (OSError, ValueError) as err:
        raise CheckpointError(f"could not read a model config from {str(name_or_path)!r}: {_first_line(err)}") from err
    if config.model_type == "hf_gpt2":
        try:
            return HfGPT2ForCausalLM.from_pretrained(str(name_or_path))
        except (OSError, RuntimeError, ValueError) as err:
            raise CheckpointError(
                f"could not load the hf_gpt2 model in {str(name_or_path)!r}: {_first_line(err)}"
            ) from err
    if config.model_type == "gpt2":
        logger.info("converting stock GPT-2 %s to hf_gpt2", name_or_path)
        return from_gpt2(name_or_path)
    raise CheckpointError(
        f"{str(name_or_path)!r} holds a {config.model_type!r} model; "
        "hf_gpt2 starts from hf_gpt2 or GPT-2 checkpoints only"
    )


def _require_source(name_or_path: str | os.PathLike) -> None:
    """An existing path must be a folder; a missing one must at least look like a Hub id ('name' or 'user/name')."""
    text = str(name_or_path)
    path = Path(text).expanduser()
    if path.exists():
        if not path.is_dir():
            raise CheckpointError(f"model source {text!r} is a file; give the folder that holds config.json")
        return
    if not _HUB_ID.fullmatch(text):
        raise CheckpointError(
            f"model source {text!r} does not exist; give a model folder or a Hub id like 'user/name'"
        )


def _first_line(err: BaseException) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__

"""Stock transformers GPT-2 ⇄ hf_gpt2, every head: OpenAI's weights in, stock GPT-2 out, identical outputs.

Parameter names are the same on both sides (the token-classification head is ``classifier`` in stock GPT-2 and
``score`` in hf_gpt2, transformers' generic head); stock GPT-2 stores its projections as Conv1D (in, out) matrices
and hf_gpt2 as nn.Linear (out, in), so conversion transposes those four weights per block and copies the rest.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
import transformers
from transformers import AutoConfig, GPT2Config, GPT2PreTrainedModel

from hf_gpt2 import modeling_hf_gpt2, online
from hf_gpt2.configuration_hf_gpt2 import HfGPT2Config
from hf_gpt2.errors import CheckpointError, ConversionError
from hf_gpt2.locations import missing_source_problem
from hf_gpt2.modeling_hf_gpt2 import HfGPT2ForCausalLM, HfGPT2PreTrainedModel

logger = logging.getLogger(__name__)

# Stock GPT-2 weights held as Conv1D (in_features, out_features); hf_gpt2 holds them as nn.Linear (out, in).
_CONV1D_SUFFIXES = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
# Stock GPT-2 class → (hf_gpt2 class, renamed key prefixes stock → hf_gpt2).
_HEADS = {
    "GPT2Model": ("HfGPT2Model", {}),
    "GPT2LMHeadModel": ("HfGPT2ForCausalLM", {}),
    "GPT2ForSequenceClassification": ("HfGPT2ForSequenceClassification", {}),
    "GPT2ForTokenClassification": ("HfGPT2ForTokenClassification", {"classifier.": "score."}),
    "GPT2ForQuestionAnswering": ("HfGPT2ForQuestionAnswering", {}),
}
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
# What the task heads read from any config: labels, the padding id that finds a sequence's last token, dropout.
_TASK_CONFIG_FIELDS = ("id2label", "label2id", "problem_type", "pad_token_id", "classifier_dropout")
# Stock GPT-2 options that change the architecture and that hf_gpt2 does not implement.
_UNSUPPORTED_STOCK_OPTIONS = {
    "add_cross_attention": False,
    "scale_attn_by_inverse_layer_idx": False,
    "reorder_and_upcast_attn": False,
}


def config_from_gpt2(config: GPT2Config) -> HfGPT2Config:
    """Return the HfGPT2Config equivalent to a stock GPT2Config.

    Raises:
        ConversionError: if the stock config uses an option hf_gpt2 does not implement.
    """
    for option, supported in _UNSUPPORTED_STOCK_OPTIONS.items():
        if getattr(config, option, supported) != supported:
            raise ConversionError(
                f"the GPT-2 config sets {option}={getattr(config, option)!r}, which hf_gpt2 does not implement; "
                f"only {option}={supported!r} converts"
            )
    return HfGPT2Config(**_fields(config, SHARED_CONFIG_FIELDS), **_fields(config, _TASK_CONFIG_FIELDS))


def config_to_gpt2(config: HfGPT2Config) -> GPT2Config:
    """Return the stock GPT2Config equivalent to an HfGPT2Config."""
    return GPT2Config(**_fields(config, SHARED_CONFIG_FIELDS), **_fields(config, _TASK_CONFIG_FIELDS))


def _fields(config: object, names: tuple[str, ...]) -> dict:
    return {name: getattr(config, name) for name in names if getattr(config, name, None) is not None}


def _convert_state_dict(
    source: dict[str, torch.Tensor], target: dict[str, torch.Tensor], direction: str
) -> dict[str, torch.Tensor]:
    """Map ``source`` tensors onto the keys and shapes of ``target``; transpose Conv1D ⇄ Linear weights."""
    missing = [key for key in target if key not in source]
    if missing:
        raise ConversionError(
            f"{direction}: the source has no tensor {missing[0]!r} ({len(missing)} missing in all); "
            "is it a GPT-2 checkpoint with the same number of layers and the same head?"
        )
    converted = {}
    for key, want in target.items():
        tensor = source[key]
        if key.endswith(_CONV1D_SUFFIXES):
            tensor = tensor.t()
        if tuple(tensor.shape) != tuple(want.shape):
            raise ConversionError(
                f"{direction}: tensor {key!r} has shape {tuple(source[key].shape)} in the source but the target "
                f"expects {tuple(want.shape)}{' after transposing' if key.endswith(_CONV1D_SUFFIXES) else ''}"
            )
        converted[key] = tensor.contiguous()
    return converted


def _renamed(state: dict[str, torch.Tensor], prefixes: dict[str, str]) -> dict[str, torch.Tensor]:
    """``state`` with each key that starts with a prefix in ``prefixes`` renamed to its replacement."""
    renamed = {}
    for key, tensor in state.items():
        for old, new in prefixes.items():
            if key.startswith(old):
                key = new + key[len(old) :]
                break
        renamed[key] = tensor
    return renamed


def _load_stock_gpt2(name_or_path: str | os.PathLike, architecture: str | None = None) -> GPT2PreTrainedModel:
    """A stock GPT-2 folder or Hub id as ``architecture``, else the class its config names (else GPT2LMHeadModel)."""
    _require_source(name_or_path)
    try:
        if architecture is None:
            names = transformers.AutoConfig.from_pretrained(str(name_or_path)).architectures or ()
            architecture = next((name for name in names if name in _HEADS), "GPT2LMHeadModel")
        return getattr(transformers, architecture).from_pretrained(str(name_or_path))
    except OSError as err:
        raise ConversionError(f"could not load a GPT-2 model from {str(name_or_path)!r}: {_first_line(err)}") from err


def from_gpt2(model_or_path: GPT2PreTrainedModel | str | os.PathLike) -> HfGPT2PreTrainedModel:
    """Convert a stock GPT-2 (object, folder or Hub id such as ``openai-community/gpt2``) to hf_gpt2.

    ``GPT2LMHeadModel`` becomes ``HfGPT2ForCausalLM``, ``GPT2Model`` ``HfGPT2Model`` and the sequence-classification,
    token-classification and question-answering heads their hf_gpt2 counterparts. The result has the same outputs
    (fp32: max abs difference < 1e-4) and the same greedy generations.

    Raises:
        ConversionError: if the source is missing, not GPT-2 (or a GPT-2 head without a counterpart), or a tensor is
            missing or has the wrong shape.
    """
    stock = model_or_path if not isinstance(model_or_path, (str, os.PathLike)) else _load_stock_gpt2(model_or_path)
    name = type(stock).__name__
    if name not in _HEADS:
        raise ConversionError(f"{name} has no hf_gpt2 counterpart; convertible: {', '.join(_HEADS)}")
    ours_name, renames = _HEADS[name]
    model = getattr(modeling_hf_gpt2, ours_name)(config_from_gpt2(stock.config))
    state = _convert_state_dict(_renamed(stock.state_dict(), renames), model.state_dict(), "GPT-2 → hf_gpt2")
    model.load_state_dict(state, strict=True)
    if model.can_generate():
        model.generation_config = stock.generation_config
    return model.to(next(stock.parameters()).dtype).eval()


def to_gpt2(model: HfGPT2PreTrainedModel) -> GPT2PreTrainedModel:
    """Convert an hf_gpt2 model (any head) to the stock transformers GPT-2 class with identical outputs."""
    stock_name, renames = next((s, r) for s, (o, r) in _HEADS.items() if o == type(model).__name__)
    stock = getattr(transformers, stock_name)(config_to_gpt2(model.config))
    target = {
        key: value for key, value in stock.state_dict().items() if not key.endswith((".attn.bias", "masked_bias"))
    }
    source = _renamed(model.state_dict(), {new: old for old, new in renames.items()})
    stock.load_state_dict(_convert_state_dict(source, target, "hf_gpt2 → GPT-2"), strict=False)
    if stock.can_generate():
        stock.generation_config = model.generation_config
    return stock.to(next(model.parameters()).dtype).eval()


def strip_vocab_padding(state: dict[str, torch.Tensor], vocab_size: int, pad_multiple: int) -> dict[str, torch.Tensor]:
    """A state dict with vocabulary matrices of exactly the old padded size cut to ``vocab_size`` rows.

    Checkpoints written before the vocabulary padding moved into the loss kernel hold ``transformer.wte.weight`` (and
    an untied ``lm_head.weight``) with ``vocab_size`` rounded up to ``pad_multiple`` rows; ``from_pretrained`` strips
    them itself. A matrix of any other size is left for ``load_state_dict`` to report.
    """
    padded = -(-vocab_size // pad_multiple) * pad_multiple
    return {
        key: tensor[:vocab_size]
        if key.endswith(("wte.weight", "lm_head.weight")) and len(tensor) == padded > vocab_size
        else tensor
        for key, tensor in state.items()
    }


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
        return from_gpt2(_load_stock_gpt2(name_or_path, "GPT2LMHeadModel"))
    raise CheckpointError(
        f"{str(name_or_path)!r} holds a {config.model_type!r} model; "
        "hf_gpt2 starts from hf_gpt2 or GPT-2 checkpoints only"
    )


def _require_source(name_or_path: str | os.PathLike) -> None:
    """An existing path must be a folder; a missing one must be a Hub id (then the Hub must answer)."""
    text = str(name_or_path)
    path = Path(text).expanduser()
    if path.exists():
        if not path.is_dir():
            raise CheckpointError(f"model source {text!r} is a file; give the folder that holds config.json")
        return
    problem = missing_source_problem(text, "model source")
    if problem:
        raise CheckpointError(problem)
    online.require_hub_reachable(f"download {text}")


def _first_line(err: BaseException) -> str:
    """The error's first line, or the one line of a network failure underneath it (what to set included)."""
    network = online.network_problem(err, "download the model")
    if network is not None:
        return network
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__

"""Where a finetune starts (``model.init``): a Hub id, a stock GPT-2 folder, an hf_gpt2 release, or a training
checkpoint ``runs/<name>/checkpoints/step-N`` (resume state, which has weights but no ``config.json``)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from safetensors.torch import load_file
from transformers import AutoConfig, PreTrainedConfig

from hf_gpt2.configuration_hf_gpt2 import HfGPT2Config
from hf_gpt2.convert import config_from_gpt2, load_causal_lm, strip_vocab_padding
from hf_gpt2.errors import CheckpointError
from hf_gpt2.finetune.lora import apply_lora, merge_for_release
from hf_gpt2.modeling_hf_gpt2 import HfGPT2ForCausalLM
from hf_gpt2.recipe import Recipe, load_recipe, model_config_kwargs
from hf_gpt2.tokenization import load_tokenizer
from hf_gpt2.training.state import TRAIN_STATE

logger = logging.getLogger(__name__)

_WRAPPER_PREFIXES = ("_orig_mod.", "module.")  # torch.compile and DDP wrappers, should a state dict keep them
_PEFT_PREFIX = "base_model.model."


def is_training_checkpoint(path: str | os.PathLike) -> bool:
    """True for a ``checkpoints/step-N`` folder written by the training loop (it holds ``train_state.json``)."""
    return (Path(path) / TRAIN_STATE).is_file()


def load_init_model(init: str | os.PathLike) -> HfGPT2ForCausalLM:
    """The ``HfGPT2ForCausalLM`` that ``model.init`` names: a training checkpoint, or what ``load_causal_lm`` takes.

    Raises:
        CheckpointError: if the source is missing or holds no usable GPT-2 weights.
    """
    if is_training_checkpoint(init):
        return load_training_checkpoint(init)
    return load_causal_lm(init)


def load_training_checkpoint(folder: str | os.PathLike) -> HfGPT2ForCausalLM:
    """Rebuild the model saved in a training checkpoint, as a plain ``HfGPT2ForCausalLM`` in eval mode.

    The architecture comes from ``config.json`` in the folder when present, else from the run's ``recipe.yaml``
    (two folders up). A checkpoint of a LoRA run is rebuilt with its adapters and returned merged.

    Raises:
        CheckpointError: if the weights or the run's recipe are missing, or the weights do not fit the architecture.
    """
    folder = Path(folder)
    state = _read_weights(folder)
    recipe = _run_recipe(folder)
    model = HfGPT2ForCausalLM(_config_for(folder, recipe))
    is_lora = any("lora_" in key for key in state)
    if is_lora:
        if recipe is None or not recipe.train.lora.r:
            raise CheckpointError(f"{folder} holds LoRA weights but its run's recipe.yaml has no train.lora settings")
        model = apply_lora(model, recipe)
        prefix = ""
    else:
        prefix = _PEFT_PREFIX if any(k.startswith(_PEFT_PREFIX) for k in state) else ""
        state = {k.removeprefix(prefix): v for k, v in state.items()}
    state = strip_vocab_padding(state, model.config.vocab_size, model.config.vocab_pad_multiple)  # older runs
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("lm_head.weight")]  # tied to wte; not stored
    if missing or unexpected:
        raise CheckpointError(
            f"the weights in {folder} do not fit the model of its run: missing {missing[:3]}, "
            f"unexpected {unexpected[:3]} ({len(missing)} missing, {len(unexpected)} unexpected in all)"
        )
    model.tie_weights()
    if is_lora:
        model = merge_for_release(model)
    logger.info("loaded training checkpoint %s%s", folder, " (LoRA merged)" if is_lora else "")
    return model.eval()


def _read_weights(folder: Path) -> dict[str, Any]:
    files = sorted(folder.glob("model*.safetensors"))
    if not files:
        raise CheckpointError(f"{folder} has no model*.safetensors; is it a checkpoint of the training loop?")
    state: dict[str, Any] = {}
    for file in files:
        state.update(load_file(file))
    for wrapper in _WRAPPER_PREFIXES:
        state = {key.removeprefix(wrapper): value for key, value in state.items()}
    return state


def _run_recipe(folder: Path) -> Recipe | None:
    recipe_path = folder.parent.parent / "recipe.yaml"
    return load_recipe(recipe_path) if recipe_path.is_file() else None


def _config_for(folder: Path, recipe: Recipe | None) -> PreTrainedConfig:
    """The checkpoint's HfGPT2Config: its config.json, else the run recipe's model (scratch fields or init)."""
    if (folder / "config.json").is_file():
        return HfGPT2Config.from_pretrained(folder)
    if recipe is None:
        raise CheckpointError(
            f"{folder} has no config.json and no recipe.yaml two folders up (runs/<name>/recipe.yaml); "
            "start from the run's release (final/) instead"
        )
    if recipe.model.init == "scratch":
        return HfGPT2Config(**model_config_kwargs(recipe, load_tokenizer(recipe)))
    if is_training_checkpoint(recipe.model.init):  # that run itself started from a checkpoint
        return _config_for(Path(recipe.model.init), _run_recipe(Path(recipe.model.init)))
    config = AutoConfig.from_pretrained(str(recipe.model.init))
    return config_from_gpt2(config) if config.model_type == "gpt2" else config

"""LoRA through ``peft``: adapters on hf_gpt2's nn.Linear layers, merged into a plain model for the release.

``train.lora.r > 0`` turns it on; ``target_modules`` name Linear layers by suffix (``c_attn``, ``c_proj`` in attention
and MLP, ``c_fc``). The release is a plain hf_gpt2 model with the adapters merged (``train.lora.merge: true``), or
the base model plus the adapter folder ``adapter/`` (``merge: false``), loadable with
``PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(release), release / "adapter")``.
"""

from __future__ import annotations

import copy
import logging
import os
from pathlib import Path
from typing import Any

from peft import LoraConfig, PeftModel, get_peft_model
from torch import nn

from hf_gpt2.errors import RecipeError
from hf_gpt2.finetune import apply_trainable
from hf_gpt2.recipe import Recipe

logger = logging.getLogger(__name__)

ADAPTER_DIR = "adapter"
"""Sub-folder of a release that holds the LoRA adapter when ``train.lora.merge`` is false."""


def is_peft_model(model: Any) -> bool:
    """Whether ``model`` is wrapped by peft (a ``PeftModel``)."""
    return isinstance(model, PeftModel)


def linear_layer_names(model: nn.Module) -> list[str]:
    """The distinct last name components of the model's nn.Linear layers (what ``target_modules`` can name)."""
    return sorted({name.rsplit(".", 1)[-1] for name, module in model.named_modules() if isinstance(module, nn.Linear)})


def apply_lora(model: Any, recipe: Recipe) -> Any:
    """Wrap ``model`` with LoRA adapters from ``recipe.train.lora``; only the adapters train.

    With ``train.lora.r == 0`` the model is returned unchanged. Parameters matched by ``train.trainable`` (if set)
    train too. Use the returned model: it is a new ``PeftModel`` object around the same weights.

    Raises:
        RecipeError: for a negative rank or a target module that is not a Linear layer of the model.
    """
    lora = recipe.train.lora
    if lora.r == 0:
        return model
    problems = []
    if lora.r < 0:
        problems.append(f"train.lora.r={lora.r} must be > 0 (or 0 for no LoRA)")
    if not 0.0 <= lora.dropout < 1.0:
        problems.append(f"train.lora.dropout={lora.dropout} must be in [0, 1)")
    available = linear_layer_names(model)
    missing = [name for name in lora.target_modules if name not in available]
    if missing or not lora.target_modules:
        problems.append(f"train.lora.target_modules {missing or '[]'} are not Linear layers; choose from {available}")
    if problems:
        raise RecipeError("; ".join(problems))
    config = LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=list(lora.target_modules),
        task_type="CAUSAL_LM",
    )
    peft_model = get_peft_model(model, config)
    if recipe.train.trainable is not None:
        apply_trainable(peft_model, recipe)
    trainable, total = peft_model.get_nb_trainable_parameters()
    logger.info("LoRA r=%d alpha=%d on %s: %s of %s parameters train", lora.r, lora.alpha,
                list(lora.target_modules), f"{trainable:,}", f"{total:,}")  # fmt: skip
    return peft_model


def merge_for_release(model: Any, *, merge: bool = True) -> Any:
    """The plain model to save as the release; ``model`` itself is left untouched (a copy is merged).

    Args:
        model: the unwrapped trained model (``accelerator.unwrap_model(model)``), with or without LoRA.
        merge: fold the adapters into the weights (the default); False returns the base weights without the
            adapters, to be released together with :func:`save_adapter`.

    Returns:
        ``model`` itself when it has no adapters, else a plain ``PreTrainedModel`` (e.g. ``HfGPT2ForCausalLM``).
    """
    if not is_peft_model(model):
        return model
    copied = copy.deepcopy(model)
    return copied.merge_and_unload() if merge else copied.unload()


def save_adapter(model: Any, directory: str | os.PathLike, base_model_name_or_path: str | None = None) -> Path:
    """Write the LoRA adapter (``adapter_config.json`` + ``adapter_model.safetensors``) to ``directory``.

    Args:
        model: the trained ``PeftModel``.
        directory: usually ``<release>/adapter``.
        base_model_name_or_path: what ``adapter_config.json`` names as the base (default: peft's, i.e. model.init).
    """
    if not is_peft_model(model):
        raise RecipeError("save_adapter needs a LoRA model (train.lora.r > 0)")
    directory = Path(directory)
    if base_model_name_or_path is not None:
        for config in model.peft_config.values():
            config.base_model_name_or_path = base_model_name_or_path
    model.save_pretrained(directory)
    return directory


__all__ = ["ADAPTER_DIR", "apply_lora", "is_peft_model", "merge_for_release", "save_adapter"]

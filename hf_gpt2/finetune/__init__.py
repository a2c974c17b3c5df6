"""Finetuning hooks the training loop calls: which parameters train (``train.trainable``), and LoRA (``lora``).

``apply_trainable(model, recipe)`` freezes every parameter whose name matches none of the ``train.trainable`` glob
patterns. A pattern may count blocks from the end with a negative index, so the original repo's SFT setting "last
two blocks and the final LayerNorm" is ``["transformer.h.-2.*", "transformer.h.-1.*", "transformer.ln_f.*"]``.
"""

from __future__ import annotations

import fnmatch
import logging
import re
from typing import Any

from hf_gpt2.errors import RecipeError
from hf_gpt2.recipe import Recipe

logger = logging.getLogger(__name__)

_PEFT_PREFIX = "base_model.model."
_NEGATIVE_BLOCK = re.compile(r"(^|\.)h\.-(\d+)(?=\.|$)")
_BLOCK_INDEX = re.compile(r"(^|\.)h\.\d+(?=\.|$)")


def resolve_block_indices(pattern: str, n_layer: int) -> str:
    """Rewrite ``h.-k`` (the k-th block from the end) to ``h.<n_layer - k>``.

    Raises:
        RecipeError: if k is 0 or larger than ``n_layer``.
    """

    def absolute(match: re.Match) -> str:
        k = int(match.group(2))
        if not 1 <= k <= n_layer:
            raise RecipeError(f"train.trainable pattern {pattern!r}: block -{k} does not exist in {n_layer} blocks")
        return f"{match.group(1)}h.{n_layer - k}"

    return _NEGATIVE_BLOCK.sub(absolute, pattern)


def _base_name(name: str) -> str:
    return name.removeprefix(_PEFT_PREFIX)


def _name_summary(names: list[str]) -> str:
    """Parameter names with block numbers folded (``transformer.h.{0..11}.attn.c_attn.weight``), for error hints."""
    folded: dict[str, list[int]] = {}
    for name in names:
        match = _BLOCK_INDEX.search(name)
        key = _BLOCK_INDEX.sub(r"\1h.{N}", name, count=1) if match else name
        folded.setdefault(key, []).append(int(match.group(0).rsplit(".", 1)[-1]) if match else -1)
    parts = []
    for key, indices in folded.items():
        indices = [i for i in indices if i >= 0]
        parts.append(key.replace("{N}", f"{{{min(indices)}..{max(indices)}}}") if indices else key)
    return ", ".join(parts)


def apply_trainable(model: Any, recipe: Recipe) -> Any:
    """Train only the parameters matched by ``recipe.train.trainable`` (glob patterns over parameter names).

    None (the default) leaves every parameter as it is. Names are matched without peft's ``base_model.model.``
    prefix, so the same patterns work before and after :func:`hf_gpt2.finetune.lora.apply_lora`; on a LoRA model
    the adapters stay trainable and matching base parameters are unfrozen as well. ``lm_head.weight`` is tied to
    ``transformer.wte.weight`` in GPT-2: matching either trains both.

    Returns:
        The same model, changed in place.

    Raises:
        RecipeError: if a pattern matches no parameter (the message lists the available names).
    """
    patterns = recipe.train.trainable
    if patterns is None:
        return model
    if not patterns:
        raise RecipeError("train.trainable is an empty list, which would freeze everything; use null to train all")
    n_layer = getattr(model.config, "n_layer", 0)
    resolved = [resolve_block_indices(p, n_layer) for p in patterns]
    named = list(model.named_parameters(remove_duplicate=False))
    is_lora = any(_base_name(name) != name for name, _ in named)
    matched: dict[str, int] = dict.fromkeys(patterns, 0)
    chosen: set[int] = set()
    for name, param in named:
        for pattern, glob in zip(patterns, resolved, strict=True):
            if fnmatch.fnmatchcase(_base_name(name), glob):
                matched[pattern] += 1
                chosen.add(id(param))
    unmatched = [p for p, count in matched.items() if count == 0]
    if unmatched:
        names = [_base_name(n) for n, _ in named if "lora_" not in n]
        raise RecipeError(
            f"train.trainable pattern(s) {unmatched} match no parameter; parameter names are: {_name_summary(names)}"
        )
    for name, param in named:
        keep_adapter = is_lora and "lora_" in name and param.requires_grad
        param.requires_grad_(id(param) in chosen or keep_adapter)
    _log_trainable(model)
    return model


def _log_trainable(model: Any) -> None:
    params = {id(p): p for p in model.parameters()}.values()
    total = sum(p.numel() for p in params)
    trained = sum(p.numel() for p in params if p.requires_grad)
    logger.info("training %s of %s parameters (%.2f%%)", f"{trained:,}", f"{total:,}", 100 * trained / max(total, 1))


__all__ = ["apply_trainable", "resolve_block_indices"]

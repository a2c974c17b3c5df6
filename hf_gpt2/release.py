"""The release: a `save_pretrained` folder that `from_pretrained` loads, plus samples from it.

A release is what people download: ``model.safetensors`` and ``config.json`` (with ``auto_map`` for hf_gpt2 models),
the copied modeling files, ``generation_config.json`` carrying the recipe's sampling settings, the tokenizer and the
resolved ``recipe.yaml``. It is not resume state (that is ``accelerator.save_state``, see checkpointing.py).
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

import torch

from hf_gpt2.errors import RunFolderError
from hf_gpt2.folders import replace_folder

logger = logging.getLogger(__name__)


def apply_sampling_defaults(model: Any, sample: Any) -> None:
    """Copy the recipe's ``sample`` section into ``model.generation_config`` (saved as generation_config.json)."""
    gen = model.generation_config
    gen.do_sample = sample.temperature > 0
    gen.max_new_tokens = sample.max_new_tokens
    if gen.do_sample:
        gen.temperature, gen.top_k, gen.top_p = sample.temperature, sample.top_k, sample.top_p
    if gen.pad_token_id is None:
        gen.pad_token_id = gen.eos_token_id if gen.eos_token_id is not None else model.config.eos_token_id


def save_release(
    model: Any,
    tokenizer: Any,
    directory: str | os.PathLike,
    recipe: Any = None,
    *,
    state_dict: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write a release folder atomically (a temporary folder, then a rename); replaces an older release there.

    Call it on the main process with the unwrapped model (``accelerator.unwrap_model(model)``); under FSDP/DeepSpeed
    pass ``state_dict=accelerator.get_state_dict(model)`` gathered on every process.

    Args:
        model: a ``PreTrainedModel`` (hf_gpt2 models get ``auto_map`` and their modeling files).
        tokenizer: saved beside the model (may be None).
        directory: the release folder, e.g. ``runs/<name>/final``.
        recipe: the resolved recipe; written as ``recipe.yaml`` and its ``sample`` section sets generation defaults.
        state_dict: full weights to save instead of ``model.state_dict()``.

    Returns:
        The release folder.
    """
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = directory.with_name(f".{directory.name}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        if recipe is not None:
            apply_sampling_defaults(model, recipe.sample)
        model.save_pretrained(staging, state_dict=state_dict)
        if tokenizer is not None:
            tokenizer.save_pretrained(staging)
        if recipe is not None:
            from hf_gpt2.recipe import dump_recipe

            dump_recipe(recipe, staging / "recipe.yaml")
        if not replace_folder(staging, directory):
            raise RunFolderError(f"{directory} was written by another process at the same time; write it once")
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    logger.info("release written to %s", directory)
    return directory


def save_stock_gpt2_export(model: Any, tokenizer: Any, directory: str | os.PathLike) -> Path | None:
    """Write the model as a stock transformers ``GPT2LMHeadModel`` folder (no custom code needed to load it).

    Returns None (and logs why) when the model is not an hf_gpt2 model.
    """
    from hf_gpt2.convert import to_gpt2

    if getattr(model.config, "model_type", None) != "hf_gpt2":
        logger.info("the model is a %s, not hf_gpt2; skipping the stock GPT-2 export", model.config.model_type)
        return None
    return save_release(to_gpt2(model), tokenizer, directory)


@torch.no_grad()
def generate_samples(model: Any, tokenizer: Any, sample: Any, *, seed: int = 0) -> list[dict[str, str]]:
    """Sample continuations of ``sample.prompts`` (an empty prompt starts from ``<|endoftext|>``).

    Args:
        model: an unwrapped causal LM on its device.
        tokenizer: its tokenizer.
        sample: the recipe's ``sample`` section (prompts, max_new_tokens, temperature, top_k, top_p, num_samples).
        seed: seeds torch's generator first, so that the samples are reproducible.

    Returns:
        ``[{"prompt": ..., "text": ...}, ...]``, ``num_samples`` per prompt.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    torch.manual_seed(seed)
    results = []
    for prompt in sample.prompts:
        ids = tokenizer(prompt, return_tensors="pt").input_ids if prompt else None
        if ids is None or ids.shape[1] == 0:
            ids = torch.tensor([[tokenizer.eos_token_id]])
        ids = ids.to(device)
        out = model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=sample.max_new_tokens,
            do_sample=sample.temperature > 0,
            temperature=sample.temperature if sample.temperature > 0 else None,
            top_k=sample.top_k if sample.temperature > 0 else None,
            top_p=sample.top_p if sample.temperature > 0 else None,
            num_return_sequences=sample.num_samples,
            pad_token_id=tokenizer.eos_token_id,
        )
        for row in out:
            results.append({"prompt": prompt, "text": tokenizer.decode(row[ids.shape[1] :], skip_special_tokens=True)})
    model.train(was_training)
    return results

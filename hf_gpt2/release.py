"""The release: a `save_pretrained` folder that `from_pretrained` loads, plus samples from it.

A release is what people download: ``model.safetensors`` and ``config.json`` (with ``auto_map`` for hf_gpt2 models),
the copied modeling files, ``generation_config.json`` carrying the recipe's sampling settings, the tokenizer and the
resolved ``recipe.yaml``. It is not resume state (that is ``accelerator.save_state``, see checkpointing.py).
:func:`write_release` writes a trained run's ``final/``; :func:`load_release` loads it back for evaluation.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch
from accelerate.utils import DistributedType
from transformers import AutoModelForCausalLM

from hf_gpt2.convert import to_gpt2
from hf_gpt2.errors import RunFolderError
from hf_gpt2.finetune.lora import ADAPTER_DIR, merge_for_release, save_adapter
from hf_gpt2.folders import staged_folder
from hf_gpt2.recipe import Recipe, SampleConfig, dump_recipe
from hf_gpt2.training.trainer import Trainer

logger = logging.getLogger(__name__)


def apply_sampling_defaults(model: Any, sample: SampleConfig) -> None:
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
    recipe: Recipe | None = None,
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
    with staged_folder(directory) as stage:
        if recipe is not None:
            apply_sampling_defaults(model, recipe.sample)
        model.save_pretrained(stage.path, state_dict=state_dict)
        if tokenizer is not None:
            tokenizer.save_pretrained(stage.path)
        if recipe is not None:
            dump_recipe(recipe, stage.path / "recipe.yaml")
    if not stage.placed:
        raise RunFolderError(f"{directory} was written by another process at the same time; write it once")
    logger.info("release written to %s", directory)
    return directory


def save_stock_gpt2_export(model: Any, tokenizer: Any, directory: str | os.PathLike) -> Path | None:
    """Write the model as a stock transformers ``GPT2LMHeadModel`` folder (no custom code needed to load it).

    Returns None (and logs why) when the model is not an hf_gpt2 model.
    """
    if getattr(model.config, "model_type", None) != "hf_gpt2":
        logger.info("the model is a %s, not hf_gpt2; skipping the stock GPT-2 export", model.config.model_type)
        return None
    return save_release(to_gpt2(model), tokenizer, directory)


@torch.no_grad()
def generate_samples(model: Any, tokenizer: Any, sample: SampleConfig, *, seed: int = 0) -> list[dict[str, str]]:
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


def write_release(trainer: Trainer) -> Path:
    """Gather the weights (sharded under FSDP/DeepSpeed) and write ``<run>/final`` on the main process."""
    accelerator, model = trainer.accelerator, trainer.model
    accelerator.wait_for_everyone()
    sharded = accelerator.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED)
    state_dict = accelerator.get_state_dict(model) if sharded else None
    final = trainer.run_dir / "final"
    if accelerator.is_main_process:
        unwrapped = accelerator.unwrap_model(model, keep_torch_compile=False)
        lora = trainer.recipe.train.lora
        if lora.r:  # LoRA: ship plain weights (merged, or the base with the adapter beside it)
            save_release(merge_for_release(unwrapped, merge=lora.merge), trainer.tokenizer, final, trainer.recipe)
            if not lora.merge:
                save_adapter(unwrapped, final / ADAPTER_DIR, trainer.recipe.model.init)
        else:
            save_release(unwrapped, trainer.tokenizer, final, trainer.recipe, state_dict=state_dict)
    accelerator.wait_for_everyone()
    return final


def load_release(final: Path, trainer: Trainer) -> Any:
    """Load the release folder back (as a user would) onto this process's device.

    On a node that does not share the main node's filesystem (multi-node without a shared disk) ``final/`` is not
    there; such a process evaluates the same weights from memory instead (the trained model, merged like the release
    when LoRA is on). That needs the whole model in memory, so FSDP/DeepSpeed across such nodes is refused.
    """
    accelerator = trainer.accelerator
    if (final / "config.json").is_file():
        return AutoModelForCausalLM.from_pretrained(final).to(accelerator.device).eval()
    if accelerator.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED):
        raise RunFolderError(
            f"process {accelerator.process_index} cannot see {final}, which the main process wrote, and its "
            f"{accelerator.distributed_type.value} shard is not the whole model; put run.output_dir on a "
            "filesystem every node shares"
        )
    logger.info("%s is on the main node's disk: evaluating the same weights from memory here", final)
    unwrapped = accelerator.unwrap_model(trainer.model, keep_torch_compile=False)
    return merge_for_release(unwrapped, merge=trainer.recipe.train.lora.merge).eval()

"""The end of a run: release folder, stock GPT-2 export, samples, benchmark tasks, eval.json, model card, push."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from accelerate.logging import get_logger
from accelerate.utils import DistributedType

from hf_gpt2.errors import RunFolderError
from hf_gpt2.release import generate_samples, match_file_modes, save_release, save_stock_gpt2_export

logger = get_logger(__name__)


def finish_run(trainer: Any) -> dict[str, Any]:
    """Write ``final/`` and ``eval.json``, sample, run ``eval.tasks``, write the model card and push; return eval.json.

    The release is reloaded from disk for sampling and evaluation, which also proves that ``from_pretrained`` loads it
    (and works the same under FSDP or DeepSpeed, where the in-memory model is sharded).
    """
    accelerator, recipe, run_dir = trainer.accelerator, trainer.recipe, trainer.run_dir
    from hf_gpt2.training.loop import log_val_loss

    if trainer.last_val_step != trainer.step:
        log_val_loss(trainer)
    if trainer.pusher is not None:
        trainer.pusher.close()
        trainer.pusher = None
    final = write_release(trainer)
    model = load_release(final, trainer)
    report: dict[str, Any] = {
        "val_loss": trainer.last_val_loss,
        "val_perplexity": math.exp(min(trainer.last_val_loss, 50.0)),
        "step": trainer.step,
        "tokens_seen": trainer.tokens_seen,
        "train_time_s": round(trainer.train_time_s, 1),
        "wall_time_s": round(time.time() - trainer.started_at, 1),
        "device": device_name(accelerator.device),
        "num_processes": accelerator.num_processes,
        "mixed_precision": accelerator.mixed_precision,
    }
    if accelerator.is_main_process:
        save_stock_gpt2_export(model, trainer.tokenizer, run_dir / "final-gpt2")
        log_samples(trainer, model)
    report.update(run_eval_tasks(trainer, model))
    if accelerator.is_main_process:
        (run_dir / "eval.json").write_text(json.dumps(report, indent=2) + "\n")
        logger.info(
            "eval.json: val_loss %.4f (ppl %.2f) at step %d",
            report["val_loss"],
            report["val_perplexity"],
            trainer.step,
        )
        publish(final, run_dir, recipe)
    accelerator.wait_for_everyone()
    return report


def device_name(device: Any) -> str:
    """A readable name of the training device, e.g. ``NVIDIA H100 80GB HBM3`` or ``cpu (x86_64)``."""
    import platform

    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{device.type} ({platform.machine()})"


def write_release(trainer: Any) -> Path:
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
            from hf_gpt2.finetune.lora import ADAPTER_DIR, merge_for_release, save_adapter

            save_release(merge_for_release(unwrapped, merge=lora.merge), trainer.tokenizer, final, trainer.recipe)
            if not lora.merge:
                save_adapter(unwrapped, final / ADAPTER_DIR, trainer.recipe.model.init)
                match_file_modes(final / ADAPTER_DIR)
        else:
            save_release(unwrapped, trainer.tokenizer, final, trainer.recipe, state_dict=state_dict)
    accelerator.wait_for_everyone()
    return final


def load_release(final: Path, trainer: Any) -> Any:
    """Load the release folder back (as a user would) onto this process's device.

    On a node that does not share the main node's filesystem (multi-node without a shared disk) ``final/`` is not
    there; such a process evaluates the same weights from memory instead (the trained model, merged like the release
    when LoRA is on). That needs the whole model in memory, so FSDP/DeepSpeed across such nodes is refused.
    """
    from transformers import AutoModelForCausalLM

    import hf_gpt2  # noqa: F401  (registers model_type hf_gpt2 with the Auto classes)

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
    from hf_gpt2.finetune.lora import merge_for_release

    unwrapped = accelerator.unwrap_model(trainer.model, keep_torch_compile=False)
    return merge_for_release(unwrapped, merge=trainer.recipe.train.lora.merge).eval()


def log_samples(trainer: Any, model: Any) -> list[dict[str, str]]:
    """Sample from ``sample.prompts``; log them to the console and TensorBoard and keep them in samples.json."""
    recipe = trainer.recipe
    if not recipe.sample.prompts:
        return []
    samples = generate_samples(model, trainer.tokenizer, recipe.sample, seed=recipe.run.seed)
    for i, sample in enumerate(samples):
        logger.info("sample %d\n%s%s\n%s", i, sample["prompt"], sample["text"], "-" * 60)
        trainer.accelerator.log({f"samples/{i}": f"**{sample['prompt']}**{sample['text']}"}, step=trainer.step)
    (trainer.run_dir / "samples.json").write_text(json.dumps(samples, indent=2, ensure_ascii=False) + "\n")
    return samples


def check_eval_tasks(recipe: Any) -> None:
    """Refuse unknown ``eval.tasks`` names and missing ``eval.data`` paths before training, not after it."""
    if not recipe.eval.tasks:
        return
    from hf_gpt2.evaluation.registry import resolve_tasks

    resolve_tasks(list(recipe.eval.tasks), dict(recipe.eval.data) or None)


def run_eval_tasks(trainer: Any, model: Any) -> dict[str, dict[str, float]]:
    """Run ``eval.tasks`` through ``hf_gpt2.evaluation.run_tasks`` (every process takes part) and log the scores."""
    section = trainer.recipe.eval
    if not section.tasks:
        return {}
    from hf_gpt2.evaluation import run_tasks

    results = run_tasks(
        model,
        trainer.tokenizer,
        list(section.tasks),
        data=dict(section.data) or None,
        limit=section.limit,
        batch_size=section.batch_size,
        accelerator=trainer.accelerator,
    )
    scalars = {
        f"eval/{task}/{name}": float(value)
        for task, scores in results.items()
        for name, value in scores.items()
        if isinstance(value, (int, float))
    }
    trainer.accelerator.log(scalars, step=trainer.step)
    for task, scores in results.items():
        logger.info(
            "eval %s: %s", task, ", ".join(f"{k} {v:.4g}" for k, v in scores.items() if isinstance(v, (int, float)))
        )
    return results


def publish(final: Path, run_dir: Path, recipe: Any) -> None:
    """Write the model card and push the release when ``hub.push_final``."""
    from hf_gpt2.hub import push_release, write_model_card

    write_model_card(final, run_dir)
    if recipe.hub.push_final and recipe.hub.repo_id:
        push_release(final, recipe.hub, run_dir=run_dir)

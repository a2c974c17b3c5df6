"""The job, in the order the data flows: prepare → train → release → evaluate → card → push.

:func:`run_pipeline` is what ``hf-gpt2 train`` and ``accelerate launch train.py RECIPE`` run. Each step is done by
the package that owns it: the tokenizer and the token shards (:mod:`hf_gpt2.tokenization`, :mod:`hf_gpt2.data`),
the Accelerate loop (:mod:`hf_gpt2.training`, which knows nothing of what follows it: the checkpoint upload and the
Hub download arrive here as functions), the ``final/`` release (:mod:`hf_gpt2.release`), the benchmarks
(:mod:`hf_gpt2.evaluation`), ``eval.json`` (:mod:`hf_gpt2.eval_report`), the card and the push (:mod:`hf_gpt2.hub`).
Every process runs the pipeline; side effects happen on the main process.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from accelerate import Accelerator
from accelerate.logging import get_logger
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from hf_gpt2 import hub
from hf_gpt2.data.loader import TokenWindowLoader
from hf_gpt2.data.prepare import prepare_token_shards
from hf_gpt2.data.sft import SFTLoader, prepare_sft_data
from hf_gpt2.data.streaming import StreamingData, StreamingTokenLoader
from hf_gpt2.eval_report import EVAL_JSON, EvalReport
from hf_gpt2.evaluation import run_tasks
from hf_gpt2.evaluation.registry import resolve_tasks
from hf_gpt2.folders import write_text_atomically
from hf_gpt2.recipe import HubConfig, Recipe
from hf_gpt2.release import generate_samples, load_release, save_stock_gpt2_export, write_release
from hf_gpt2.tokenization import load_tokenizer
from hf_gpt2.training.distributed import check_same_tokenizer
from hf_gpt2.training.launch import launch
from hf_gpt2.training.loop import log_run_start, restore, train
from hf_gpt2.training.metrics import device_name
from hf_gpt2.training.run_folder import start_run_folder
from hf_gpt2.training.trainer import Trainer, build_trainer

logger = get_logger(__name__)


def run_pipeline(recipe: Recipe) -> Path:
    """Prepare the data, train, write the release, evaluate it, write the card and push, as the recipe says.

    Everything is checked (tasks, batch plan, run folder, checkpoint, data, model shapes) before the run folder is
    created, so a refused run changes nothing that exists.

    Returns:
        The run folder.

    Raises:
        HfGPT2Error: a bad recipe, run folder, checkpoint or data set (one-line message), or a NaN/inf loss.
    """
    check_eval_tasks(recipe)
    run = launch(recipe, download=download_checkpoint)
    tokenizer, prepared, loader_cls = prepare(recipe, run.accelerator)
    trainer = build_trainer(recipe, run.accelerator, run.plan, run.run_dir, tokenizer=tokenizer, prepared=prepared,
                            loader_cls=loader_cls)  # fmt: skip
    trainer.started_at = run.started_at
    if run.checkpoint is not None:  # before anything is written: a checkpoint that does not fit changes nothing
        restore(trainer, run.checkpoint)
    start_run_folder(run.accelerator, recipe, run.run_dir, trainer.step)
    uploads = checkpoint_uploads(recipe.hub, run.accelerator)
    trainer.on_checkpoint = uploads.submit if uploads is not None else None
    log_run_start(trainer)
    try:
        finished = train(trainer)
        if uploads is not None:  # the pushed checkpoints are on the Hub before the release is written
            uploads.close()
            uploads = None
        if finished:
            finish_run(trainer)
    finally:
        if uploads is not None:  # a failing run still finishes (or reports) the uploads it submitted
            uploads.close()
    run.accelerator.end_training()
    return run.run_dir


# -- before training ------------------------------------------------------------------------------------------------


def check_eval_tasks(recipe: Recipe) -> None:
    """Refuse unknown ``eval.tasks`` names and missing ``eval.data`` paths before training, not after it."""
    if recipe.eval.tasks:
        resolve_tasks(list(recipe.eval.tasks), dict(recipe.eval.data) or None)


def download_checkpoint(spec: str) -> Path:
    """Fetch the newest checkpoint of ``hub:USER/NAME[@REV]`` (``train.resume_from``) into the local Hub cache."""
    return Path(hub.download_checkpoint(spec))


def prepare(recipe: Recipe, accelerator: Accelerator) -> tuple[PreTrainedTokenizerBase, Any, Callable[..., Any]]:
    """The run's tokenizer (the same vocabulary on every process) and its prepared data with the loader class."""
    with accelerator.main_process_first():  # tokenizer.train_new trains once; the other processes reuse it
        tokenizer = load_tokenizer(recipe)
    check_same_tokenizer(accelerator, tokenizer)
    prepared, loader_cls = build_data(recipe, tokenizer, accelerator)
    return tokenizer, prepared, loader_cls


def build_data(
    recipe: Recipe, tokenizer: PreTrainedTokenizerBase, accelerator: Accelerator
) -> tuple[Any, Callable[..., Any]]:
    """Prepare (or reuse) the tokenized data on the main process first; return it and its loader class.

    ``data.format: text`` gives token shards read by ``TokenWindowLoader``; ``sft`` gives conversations with labels
    read by ``SFTLoader``. Both loaders take the same arguments and restore their position from ``state_dict``.
    """
    with accelerator.main_process_first():
        if recipe.data.format == "sft":
            return prepare_sft_data(recipe, tokenizer), SFTLoader
        if recipe.data.streaming:
            logger.info("data.streaming: tokenizing %s on the fly (no prepare step)", recipe.data.source)
            return StreamingData(recipe), StreamingTokenLoader.from_data
        return prepare_token_shards(recipe), TokenWindowLoader


def checkpoint_uploads(hub_section: HubConfig, accelerator: Accelerator) -> hub.CheckpointPusher | None:
    """A background pusher of checkpoints to the Hub (``hub.push_checkpoints``), on the main process only."""
    if hub_section.push_checkpoints and hub_section.repo_id and accelerator.is_main_process:
        return hub.CheckpointPusher(hub_section)
    return None


# -- after training -------------------------------------------------------------------------------------------------


def finish_run(trainer: Trainer) -> EvalReport:
    """Write ``final/``, sample, run ``eval.tasks``, write ``eval.json``, the model card, and push; return the report.

    The release is reloaded from disk for sampling and evaluation, which also proves that ``from_pretrained`` loads it
    (and works the same under FSDP or DeepSpeed, where the in-memory model is sharded).
    """
    accelerator, run_dir = trainer.accelerator, trainer.run_dir
    final = write_release(trainer)
    model = load_release(final, trainer)
    report = EvalReport.for_run(
        trainer.last_val_loss,
        val_bits_per_byte=trainer.last_val_bpb,
        step=trainer.step,
        tokens_seen=trainer.tokens_seen,
        train_time_s=round(trainer.train_time_s, 1),
        wall_time_s=round(time.time() - trainer.started_at, 1),
        device=device_name(accelerator.device),
        num_processes=accelerator.num_processes,
        mixed_precision=accelerator.mixed_precision,
    )
    if accelerator.is_main_process:
        save_stock_gpt2_export(model, trainer.tokenizer, run_dir / "final-gpt2")
        log_samples(trainer, model)
    report.tasks = run_eval_tasks(trainer, model)
    if accelerator.is_main_process:
        report.write(run_dir / EVAL_JSON)
        logger.info("eval.json: val_loss %.4f (ppl %.2f), val bits per byte %s at step %d", report.val_loss,
                    report.val_perplexity, report.val_bits_per_byte, trainer.step)  # fmt: skip
        publish(final, run_dir, trainer.recipe)
    accelerator.wait_for_everyone()
    return report


def log_samples(trainer: Trainer, model: PreTrainedModel) -> list[dict[str, str]]:
    """Sample from ``sample.prompts``; log them to the console and TensorBoard and keep them in samples.json."""
    recipe = trainer.recipe
    if not recipe.sample.prompts:
        return []
    samples = generate_samples(model, trainer.tokenizer, recipe.sample, seed=recipe.run.seed)
    for i, sample in enumerate(samples):
        logger.info("sample %d\n%s%s\n%s", i, sample["prompt"], sample["text"], "-" * 60)
        trainer.accelerator.log({f"samples/{i}": f"**{sample['prompt']}**{sample['text']}"}, step=trainer.step)
    write_text_atomically(trainer.run_dir / "samples.json", json.dumps(samples, indent=2, ensure_ascii=False) + "\n")
    return samples


def run_eval_tasks(trainer: Trainer, model: PreTrainedModel) -> dict[str, dict[str, float]]:
    """Run ``eval.tasks`` through ``hf_gpt2.evaluation.run_tasks`` (every process takes part) and log the scores."""
    section = trainer.recipe.eval
    if not section.tasks:
        return {}
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


def publish(final: Path, run_dir: Path, recipe: Recipe) -> None:
    """Write the model card and push the release when ``hub.push_final``."""
    hub.write_model_card(final, run_dir)
    if recipe.hub.push_final and recipe.hub.repo_id:
        hub.push_release(final, recipe.hub, run_dir=run_dir)

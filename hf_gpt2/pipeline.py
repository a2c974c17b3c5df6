"""The job, in the order the data flows: prepare → train → release → evaluate → card → push.

:func:`run_pipeline` is what ``hf-gpt2 train`` and ``accelerate launch train.py RECIPE`` run. Each step is done by
the package that owns it: the tokenizer and the token shards (:mod:`hf_gpt2.tokenization`, :mod:`hf_gpt2.data`),
the Accelerate loop (:mod:`hf_gpt2.training`, which knows nothing of what follows it: the checkpoint upload and the
Hub download arrive here as functions), the ``final/`` release (:mod:`hf_gpt2.release`), the benchmarks
(:mod:`hf_gpt2.evaluation`), ``eval.json`` (:mod:`hf_gpt2.eval_report`), the card and the push (:mod:`hf_gpt2.hub`).
Every process runs the pipeline; side effects happen on the main process.

What can be checked before training is checked before training (the eval tasks' data, the Hub token and repo for
a push, the stock GPT-2 export), and what comes after training can always be finished later: the last step is
saved, ``finished.json`` is written only once the whole release is (release, export, samples, ``eval.json``, card,
push), and the same command with ``train.resume_from=latest`` finishes an unfinished release without training.
SIGTERM while the release is written stops the run as SIGTERM during training does (exit 0, finish it later).
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import huggingface_hub.constants
from accelerate import Accelerator, DistributedType
from accelerate.logging import get_logger
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from hf_gpt2 import hub, online
from hf_gpt2.data.loader import TokenWindowLoader
from hf_gpt2.data.prepare import prepare_token_shards
from hf_gpt2.data.sft import SFTLoader, prepare_sft_data
from hf_gpt2.data.streaming import StreamingData, StreamingTokenLoader
from hf_gpt2.errors import CheckpointError, DataError, RecipeError, StorageError
from hf_gpt2.eval_report import EVAL_JSON, EvalPoint, EvalReport
from hf_gpt2.evaluation import run_tasks
from hf_gpt2.evaluation.registry import TASKS, resolve_tasks
from hf_gpt2.folders import as_storage_error, write_text_atomically
from hf_gpt2.hub.references import BOOKKEEPING
from hf_gpt2.locations import is_hub_id, missing_source_problem
from hf_gpt2.recipe import HubConfig, Recipe
from hf_gpt2.release import (
    check_samples_fit,
    check_stock_export,
    generate_samples,
    load_release,
    save_stock_gpt2_export,
    write_release,
)
from hf_gpt2.tokenization import load_tokenizer
from hf_gpt2.training.distributed import check_same_tokenizer, main_decides
from hf_gpt2.training.launch import Launch, launch
from hf_gpt2.training.loop import log_run_start, restore, train
from hf_gpt2.training.metrics import device_name
from hf_gpt2.training.run_folder import FINISHED, mark_finished, start_run_folder
from hf_gpt2.training.trainer import Trainer, build_trainer

logger = get_logger(__name__)


def run_pipeline(recipe: Recipe) -> Path:
    """Prepare the data, train, write the release, evaluate it, write the card and push, as the recipe says.

    Everything is checked (tasks and their data, local and Hub sources, the Hub token and repo for a push, batch
    plan, run folder and its lock, checkpoint, data, model shapes, the stock export, that the samples fit in the
    model's context) before the run folder is created, so a refused run changes nothing that exists.

    Returns:
        The run folder.

    Raises:
        HfGPT2Error: a bad recipe, run folder, checkpoint or data set (one-line message), a NaN/inf loss, or a file
            system that refuses a write (:class:`StorageError`, saying how to continue the run).
    """
    check_eval_tasks(recipe)
    check_sources(recipe)
    run = launch(recipe, download=download_checkpoint)
    try:
        check_in_training_eval(recipe, run.accelerator)
        main_decides(run.accelerator.state, lambda: check_hub_access(recipe.hub))
        return train_and_finish(recipe, run)
    finally:
        run.release()


def train_and_finish(recipe: Recipe, run: Launch) -> Path:
    """The run in its locked folder: data, trainer, training, then the release (:func:`finish_or_stop`)."""
    tokenizer, prepared, loader_cls = prepare(recipe, run.accelerator)
    trainer = build_trainer(recipe, run.accelerator, run.plan, run.run_dir, tokenizer=tokenizer, prepared=prepared,
                            loader_cls=loader_cls)  # fmt: skip
    trainer.started_at = run.started_at
    main_decides(run.accelerator.state, lambda: check_stock_export(run.accelerator.unwrap_model(trainer.model)))
    if run.checkpoint is not None:  # before anything is written: a checkpoint that does not fit changes nothing
        restore(trainer, run.checkpoint)
    check_samples_fit(recipe.sample, tokenizer, run.accelerator.unwrap_model(trainer.model).config)
    start_run_folder(run.accelerator, recipe, run.run_dir, trainer.step)
    uploads = checkpoint_uploads(recipe.hub, run.accelerator)
    trainer.on_checkpoint = uploads.submit if uploads is not None else None
    trainer.on_eval = evaluate_during_training if recipe.eval.every else None
    log_run_start(trainer)
    try:
        finished = train(trainer)
        if uploads is not None:  # the pushed checkpoints are on the Hub before the release is written
            uploads.close()
            uploads = None
        if finished:
            finish_or_stop(trainer)
    except (StorageError, OSError) as err:
        storage = as_storage_error(err, run.run_dir)  # a write that names no file: TensorBoard's events
        if storage is None:
            raise
        raise StorageError(
            f"{storage}; to continue the run: run.name={run.run_dir.name} train.resume_from=latest",
            path=storage.path,
            errno=storage.errno,
        ) from err
    finally:
        if uploads is not None:  # a failing run still finishes (or reports) the uploads it submitted
            uploads.close()
    run.accelerator.end_training()
    return run.run_dir


# -- before training ------------------------------------------------------------------------------------------------


def check_eval_tasks(recipe: Recipe) -> None:
    """Refuse unknown ``eval.tasks`` names, missing ``eval.data`` paths and Hub data that cannot be had, before
    training, not after it.

    A task without ``eval.data`` reads its Hub dataset: it is loaded now (downloaded into the datasets cache, or
    found there), so that the evaluation after training reads it from the cache, and a dataset that cannot be had
    (offline without a cached copy, or the Hub unreachable) refuses the run now.

    Raises:
        UnknownTaskError, DataError: naming the task and the fix.
    """
    if not recipe.eval.tasks:
        return
    data = dict(recipe.eval.data)
    for name in resolve_tasks(list(recipe.eval.tasks), data or None):
        source = TASKS[name].hub
        if name in data or source is None:
            continue
        try:
            source.load(name)
        except DataError as err:
            offline = "HF_HUB_OFFLINE=1 is set and there is no cached copy; " if _hub_offline() else ""
            raise DataError(
                f"eval.tasks: {name} reads {source.describe()} from the Hub, which could not be loaded ({offline}"
                f"{err.__cause__ or err}); set eval.data.{name}=PATH to a local copy, or drop {name} from "
                "eval.tasks (checked before training: nothing was written)"
            ) from err


def check_in_training_eval(recipe: Recipe, accelerator: Accelerator) -> None:
    """Refuse ``eval.every`` where the training model is sharded (FSDP, DeepSpeed ZeRO-3): the benchmark scorer needs
    each process to hold the whole model. The evaluation after training reads the release and works everywhere.

    Raises:
        RecipeError: naming the setting and what works instead.
    """
    if not recipe.eval.every:
        return
    plugin = accelerator.state.deepspeed_plugin
    sharded = accelerator.distributed_type == DistributedType.FSDP or (
        plugin is not None and getattr(plugin, "zero_stage", None) == 3
    )
    if sharded:
        raise RecipeError(
            f"eval.every={recipe.eval.every} evaluates the training model, which "
            f"{accelerator.distributed_type.value} shards across processes; set eval.every=0 (eval.tasks still run "
            "on the release after training) or train with DDP (accelerate_configs/multi_gpu.yaml) or DeepSpeed "
            "ZeRO-1/2 (checked before training: nothing was written)"
        )


def _hub_offline() -> bool:
    return bool(huggingface_hub.constants.HF_HUB_OFFLINE)


def check_hub_access(hub_section: HubConfig) -> None:
    """Before training: the token and the repo of ``hub.push_final`` / ``hub.push_checkpoints`` (main process)."""
    if not ((hub_section.push_final or hub_section.push_checkpoints) and hub_section.repo_id):
        return
    setting = "hub.push_final" if hub_section.push_final else "hub.push_checkpoints"
    try:
        hub.check_hub_access(hub_section.repo_id)
    except hub.HubError as err:
        raise hub.HubError(
            f"{setting}: {err}; or set hub.push_final=false and hub.push_checkpoints=false to train without the Hub "
            "and push the release later with `hf-gpt2 push` (checked before training: nothing was written)"
        ) from err


def check_sources(recipe: Recipe) -> None:
    """Stop at once, before any data is prepared, when ``model.init`` or ``tokenizer.name`` is a local path that does
    not exist, when the recipe reads from the Hub and the Hub does not answer (``model.init`` or ``tokenizer.name`` a
    Hub id, ``data.source=hub:``, ``train.resume_from=hub:``). A push's token and repo: :func:`check_hub_access`."""
    model, tokenizer = recipe.model.init, recipe.tokenizer.name
    data, resume = recipe.data.source, recipe.train.resume_from or ""
    missing = [
        missing_source_problem(model, "model.init") if model != "scratch" else None,
        missing_source_problem(tokenizer, "tokenizer.name", "tokenizer folder") if tokenizer != "gpt2" else None,
    ]
    if any(missing):
        raise CheckpointError("; ".join(m for m in missing if m))
    reads = [
        *([f"model.init={model}"] if model != "scratch" and is_hub_id(model) else []),
        *([f"tokenizer.name={tokenizer}"] if tokenizer != "gpt2" and is_hub_id(tokenizer) else []),
        *([f"data.source={data}"] if data.startswith("hub:") else []),
        *([f"train.resume_from={resume}"] if resume.startswith("hub:") else []),
    ]
    if reads:
        online.require_hub_reachable(f"read {', '.join(reads)}")


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


class FinishInterrupted(BaseException):
    """SIGTERM came while the release was written (a BaseException, so that nothing on the way swallows it)."""


@contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """While active, SIGTERM raises :class:`FinishInterrupted`: each write in progress removes its temporary
    folder on the way out, and the last step's checkpoint is already saved."""

    def interrupt(signum: int, frame: Any) -> None:
        raise FinishInterrupted

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def finish_or_stop(trainer: Trainer) -> EvalReport | None:
    """Finish the run (:func:`finish_run`); on SIGTERM, stop and say how to finish it.

    Returns:
        The report, or None when SIGTERM stopped the finish.
    """
    try:
        with sigterm_interrupts():
            return finish_run(trainer)
    except FinishInterrupted:
        logger.warning(
            "SIGTERM while the release of %s was written: it is not complete (no %s); the checkpoint of step %d is "
            "saved, and the same command with train.resume_from=latest finishes it without training",
            trainer.run_dir, FINISHED, trainer.step,
        )  # fmt: skip
        return None


def finish_run(trainer: Trainer) -> EvalReport:
    """Write ``final/``, sample, run ``eval.tasks``, write ``eval.json``, the model card, push, and last
    ``finished.json``; return the report.

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
        train_time_s=round(trainer.train_time_s, 3),  # a time-to-target race compares short runs too
        wall_time_s=round(time.time() - trainer.started_at, 1),
        device=device_name(accelerator.device),
        num_processes=accelerator.num_processes,
        mixed_precision=accelerator.mixed_precision,
    )
    if accelerator.is_main_process:
        save_stock_gpt2_export(model, trainer.tokenizer, run_dir / "final-gpt2")
        log_samples(trainer, model)
    report.tasks = run_eval_tasks(trainer, model)
    report.history = [EvalPoint.from_json(point) for point in trainer.eval_history]
    if accelerator.is_main_process:
        report.write(run_dir / EVAL_JSON)
        bpb = "n/a" if report.val_bits_per_byte is None else f"{report.val_bits_per_byte:.4f}"
        logger.info("eval.json: val_loss %.4f (ppl %.2f), val bits per byte %s at step %d", report.val_loss,
                    report.val_perplexity, bpb, trainer.step)  # fmt: skip
        pushed = publish(final, run_dir, trainer.recipe)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:  # last: the whole release is written
        mark_finished(run_dir, {"step": trainer.step, "pushed": pushed})
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
    if not trainer.recipe.eval.tasks:
        return {}
    results = _recipe_tasks(trainer, model, trainer.recipe.eval.limit)
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


def _recipe_tasks(
    trainer: Trainer, model: Any, limit: int | None, *, progress: bool = True
) -> dict[str, dict[str, float]]:
    section = trainer.recipe.eval
    return run_tasks(
        model,
        trainer.tokenizer,
        list(section.tasks),
        data=dict(section.data) or None,
        limit=limit,
        batch_size=section.batch_size,
        accelerator=trainer.accelerator,
        progress=progress,
    )


def in_training_prefix(limit: int | None) -> str:
    """The TensorBoard prefix of the evaluations during training: ``eval_first200`` for the first 200 items of each
    task, ``eval_all`` for all of them; never ``eval``, the evaluation after training, so that a curve on a slice is
    not drawn or read as the number on the whole task."""
    return f"eval_first{limit}" if limit is not None else "eval_all"


def evaluate_during_training(trainer: Trainer) -> list[dict[str, Any]]:
    """``trainer.on_eval``: run ``eval.tasks`` on the first ``eval.every_limit`` items of each (every process takes
    part), log the scores to TensorBoard (``eval_first<N>/<task>/<metric>``) and in one line, and return the points
    of eval.json's ``history``."""
    section = trainer.recipe.eval
    results = _recipe_tasks(trainer, trainer.model, section.every_limit, progress=False)
    prefix = in_training_prefix(section.every_limit)
    points = [
        EvalPoint(
            step=trainer.step,
            tokens_seen=trainer.tokens_seen,
            task=task,
            limit=section.every_limit,
            n=int(scores.get("n", 0)),
            metrics={k: float(v) for k, v in scores.items() if k not in BOOKKEEPING and isinstance(v, (int, float))},
        )
        for task, scores in results.items()
    ]
    trainer.accelerator.log(
        {f"{prefix}/{p.task}/{name}": value for p in points for name, value in p.metrics.items()}, step=trainer.step
    )
    shown = "; ".join(f"{p.task} {', '.join(f'{k} {v:.4g}' for k, v in p.metrics.items())} (n={p.n})" for p in points)
    slice_ = f"first {section.every_limit} items per task" if section.every_limit is not None else "all items"
    logger.info("step %d | eval.tasks on %s: %s", trainer.step, slice_, shown)
    return [point.to_json() for point in points]


def publish(final: Path, run_dir: Path, recipe: Recipe) -> str | None:
    """Write the model card and push the release when ``hub.push_final``; return the commit's URL (None: no push)."""
    hub.write_model_card(final, run_dir)
    if recipe.hub.push_final and recipe.hub.repo_id:
        return hub.push_release(final, recipe.hub, run_dir=run_dir)
    return None

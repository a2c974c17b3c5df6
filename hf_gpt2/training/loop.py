"""The training loop: optimizer steps up to ``train.max_steps``, with logging, evaluation, checkpoints and SIGTERM.

:func:`train` runs the steps of a :class:`~hf_gpt2.training.trainer.Trainer` (one step is
:func:`~hf_gpt2.training.step.optimizer_step`), logs every ``run.log_every`` steps, computes the val loss every
``train.eval_every`` steps and at the end (loss and bits per byte, :mod:`~hf_gpt2.training.validation`), stops
early once ``train.target_val_bpb`` is reached, and saves a checkpoint every ``train.save_every`` steps and at the
last step; each
checkpoint goes to ``trainer.on_checkpoint`` (the pipeline's Hub upload). Every ``eval.every`` steps before the last
it calls ``trainer.on_eval`` (the pipeline's benchmark tasks, :func:`evaluate_tasks`) without touching the random
state that training uses. :func:`restore` continues from a checkpoint exactly.
"""

from __future__ import annotations

import math
import random
import signal
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate.logging import get_logger
from accelerate.utils import set_seed
from tqdm.auto import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from hf_gpt2.recipe import Recipe
from hf_gpt2.training import checkpointing, metrics
from hf_gpt2.training.components import to_model_batch
from hf_gpt2.training.distributed import is_reshardable, main_decides
from hf_gpt2.training.state import TrainState, latest_checkpoint
from hf_gpt2.training.step import optimizer_step
from hf_gpt2.training.trainer import Trainer, make_loader
from hf_gpt2.training.validation import ValScores, rows_per_forward, score_batches

logger = get_logger(__name__)


def train(trainer: Trainer) -> bool:
    """Run optimizer steps up to ``train.max_steps``; return False when stopped early by SIGTERM.

    A finished run always ends with the val loss of its last step (also when it resumed at ``max_steps``) and a
    checkpoint of that step, so that the release can be written (or written again) without training. A run with
    ``train.target_val_bpb`` finishes at the first evaluation that reaches it (and a resume from there trains no more).
    """
    recipe, accelerator = trainer.recipe, trainer.accelerator
    log_every, eval_every, save_every = intervals(recipe)
    tasks_every = recipe.eval.every if trainer.on_eval is not None else 0
    bar = tqdm(
        total=recipe.train.max_steps, initial=trainer.step, desc="train", disable=not accelerator.is_local_main_process
    )
    with PreemptionHandler(trainer), logging_redirect_tqdm(), bar:  # log lines print above the bar
        while trainer.step < recipe.train.max_steps and not trainer.target_reached:
            if _stop_agreed(trainer):
                saved = trainer.checkpoint_root / f"step-{trainer.step}"
                path = saved if saved_at_this_step(trainer) else save(trainer)
                logger.info("SIGTERM: saved %s at step %d; continue with train.resume_from=latest", path, trainer.step)
                return False
            loss, grad_norm, lr = optimizer_step(trainer)
            trainer.step += 1
            trainer.tokens_seen += trainer.plan.tokens_per_step
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}")
            if trainer.step % log_every == 0:
                log_train_metrics(trainer, grad_norm, lr)
            if (eval_every and trainer.step % eval_every == 0) or trainer.step == recipe.train.max_steps:
                if reached_target(trainer, log_val_loss(trainer)):
                    trainer.target_reached = True
                    break
            if tasks_every and trainer.step % tasks_every == 0 and trainer.step < recipe.train.max_steps:
                evaluate_tasks(trainer)
            if save_every and trainer.step % save_every == 0:
                save(trainer)
        if trainer.last_val_step != trainer.step:
            log_val_loss(trainer)
        if not saved_at_this_step(trainer):  # what follows (release, evaluation, push) resumes from the last step
            save(trainer)
        if _stop_agreed(trainer):
            logger.info("SIGTERM after the last step %d (saved); finish the run with train.resume_from=latest",
                        trainer.step)  # fmt: skip
            return False
    return True


def intervals(recipe: Recipe) -> tuple[int, int, int]:
    """(log_every, eval_every, save_every) in optimizer steps; 0 turns eval or save off (the end is always evaluated).

    Dev mode logs every step and evaluates every 10 steps at most.
    """
    log_every, eval_every = recipe.run.log_every, recipe.train.eval_every
    if recipe.run.dev:
        log_every, eval_every = 1, min(eval_every, 10) or 10
    return max(1, log_every), eval_every, recipe.train.save_every


def log_run_start(trainer: Trainer) -> None:
    """One log line with the run folder, the processes and the batch plan."""
    accelerator, plan = trainer.accelerator, trainer.plan
    logger.info(
        "run %s: %d process(es) on %s, mixed precision %s, %d × %d tokens × %d accumulation = %d tokens per step",
        trainer.run_dir,
        accelerator.num_processes,
        accelerator.device,
        accelerator.mixed_precision,
        plan.micro_batch_size,
        plan.block_size,
        plan.grad_accum_steps,
        plan.tokens_per_step,
    )


# -- checkpoints -----------------------------------------------------------------------------------------------------


def restore(trainer: Trainer, checkpoint: Path) -> None:
    """Load a checkpoint (verified by ``find_checkpoint_everywhere``): weights, optimizer, RNGs, data, step."""
    accelerator = trainer.accelerator
    train_state, data_state = checkpointing.load_checkpoint(
        accelerator,
        checkpoint,
        verified=True,
        tokens_per_step=trainer.plan.tokens_per_step,
        reshardable=is_reshardable(trainer.recipe, accelerator.state),
        optimizer=trainer.recipe.optim.name,
    )
    trainer.train_loader.load_state_dict(data_state)
    trainer.step = train_state.step
    saved = train_state.num_processes
    if saved != accelerator.num_processes:
        if accelerator.process_index >= saved:  # no saved RNG states: a fresh, distinct stream for this step
            set_seed(trainer.recipe.run.seed + 1_000_003 * trainer.step + accelerator.process_index)
        logger.warning(
            "resuming %s, saved by %d process(es), with %d: the same weights, optimizer state, data stream and "
            "global batch (%d tokens per step); dropout masks and float rounding differ from a run that kept %d",
            checkpoint, saved, accelerator.num_processes, trainer.plan.tokens_per_step, saved, main_process_only=True,
        )  # fmt: skip
    tokens = train_state.tokens_seen
    trainer.tokens_seen = tokens if tokens is not None else trainer.step * trainer.plan.tokens_per_step
    trainer.train_time_s = train_state.train_time_s
    trainer.target_reached = train_state.target_reached
    trainer.eval_history = [point for point in train_state.eval_history if point["step"] <= trainer.step]
    done = " (train.target_val_bpb was reached there: no more training)" if trainer.target_reached else ""
    logger.info("resumed from %s at step %d%s", checkpoint, trainer.step, done)


def save(trainer: Trainer) -> Path:
    """Write a checkpoint of the current step (every process takes part) and hand it to ``trainer.on_checkpoint``."""
    state = TrainState(
        step=trainer.step,
        tokens_seen=trainer.tokens_seen,
        train_time_s=trainer.train_time_s,
        tokens_per_step=trainer.plan.tokens_per_step,
        reshardable=is_reshardable(trainer.recipe, trainer.accelerator.state),
        optimizer=trainer.recipe.optim.name,
        target_reached=trainer.target_reached,
        eval_history=trainer.eval_history,
    )
    path = checkpointing.save_checkpoint(
        trainer.accelerator,
        trainer.checkpoint_root,
        state,
        trainer.train_loader.state_dict(),
        trainer.recipe.train.keep_last,
    )
    if trainer.on_checkpoint is not None and trainer.accelerator.is_main_process:
        trainer.on_checkpoint(path, trainer.step)
    return path


def saved_at_this_step(trainer: Trainer) -> bool:
    """Whether the newest checkpoint is of the current step, as the main process sees it.

    Every process gets the main's answer: saving takes every process, and on a node that does not share the main's
    filesystem there is no checkpoint to see.
    """

    def newest_is_this_step() -> bool:
        latest = latest_checkpoint(trainer.checkpoint_root)
        return latest is not None and latest.name == f"step-{trainer.step}"

    return main_decides(trainer.accelerator.state, newest_is_this_step)


# -- logging and evaluation ------------------------------------------------------------------------------------------


def log_train_metrics(trainer: Trainer, grad_norm: float | None, lr: float) -> None:
    """Log the windowed train loss, lr, grad norm, tokens/s, MFU and memory to TensorBoard and the console."""
    window = trainer.window
    steps = max(1, window["steps"])
    tokens_per_s = trainer.plan.tokens_per_step * steps / max(window["time"], 1e-9)
    values: dict[str, float] = {
        "train/loss": window["loss"] / steps,
        "train/lr": lr,
        "perf/tokens_per_s": tokens_per_s,
        "perf/memory_gb": metrics.memory_gb(trainer.accelerator.device),
        "train/tokens_seen": float(trainer.tokens_seen),
    }
    if grad_norm is not None:
        values["train/grad_norm"] = grad_norm
    mfu = "n/a"
    if trainer.peak_flops:
        per_device = tokens_per_s / trainer.accelerator.num_processes
        values["perf/mfu"] = per_device * trainer.flops_per_token / trainer.peak_flops
        mfu = f"{100 * values['perf/mfu']:.1f}%"
    trainer.accelerator.log(values, step=trainer.step)
    logger.info(
        "step %d | loss %.4f | lr %.3e | grad norm %s | %.0f tok/s | mfu %s | mem %.2f GB",
        trainer.step,
        values["train/loss"],
        lr,
        "n/a" if grad_norm is None else f"{grad_norm:.3f}",
        tokens_per_s,
        mfu,
        values["perf/memory_gb"],
    )
    trainer.window = {"loss": 0.0, "time": 0.0, "steps": 0}


def evaluate(trainer: Trainer) -> ValScores:
    """Loss and bits per byte over the validation windows (the same ones at every evaluation), summed exactly over
    every process.

    ``train.eval_batches`` batches of the val loader (a fresh one with the run's seed), split across processes; with
    ``eval_batches: null`` every window of the val split once (:meth:`TokenWindowLoader.tiled_batches`).
    """
    accelerator, recipe = trainer.accelerator, trainer.recipe
    loader = make_loader(recipe, trainer.prepared, trainer.loader_cls, "val", accelerator)
    if recipe.train.eval_batches is None:
        raw = loader.tiled_batches()
    else:
        n_batches = max(1, math.ceil(recipe.train.eval_batches / accelerator.num_processes))
        raw = (next(loader) for _ in range(n_batches))
    rows = rows_per_forward(recipe.data.block_size, accelerator.device)
    trainer.model.eval()
    batches = (to_model_batch(batch, accelerator.device) for batch in raw)
    sums = score_batches(trainer.model, batches, trainer.byte_lengths, rows).to(accelerator.device)
    trainer.model.train()
    return ValScores.from_sums(accelerator.reduce(sums, "sum").cpu())


def log_val_loss(trainer: Trainer) -> ValScores:
    """Evaluate, log ``val/loss`` and ``val/bpb`` (bits per byte) and remember them for eval.json."""
    scores = evaluate(trainer)
    trainer.last_val_loss, trainer.last_val_bpb = scores.loss, scores.bits_per_byte
    trainer.last_val_step = trainer.step
    values = {"val/loss": scores.loss}
    if scores.bits_per_byte is not None:
        values["val/bpb"] = scores.bits_per_byte
    trainer.accelerator.log(values, step=trainer.step)
    bpb = "n/a" if scores.bits_per_byte is None else f"{scores.bits_per_byte:.4f}"
    logger.info("step %d | val loss %.4f | val ppl %.2f | val bpb %s | %.1f s training", trainer.step, scores.loss,
                math.exp(min(scores.loss, 50.0)), bpb, trainer.train_time_s)  # fmt: skip
    return scores


def evaluate_tasks(trainer: Trainer) -> list[dict[str, Any]]:
    """Run ``trainer.on_eval`` (every process) with the model in eval mode, and add its points to the history.

    Training goes on exactly as without it: the random states of torch (CPU and this process's accelerator), Python
    and NumPy are restored afterwards (an evaluation that draws random numbers, or a data loader that synchronizes
    them across processes, changes no dropout mask), and its time is not counted as training time.
    """
    assert trainer.on_eval is not None
    model = trainer.model
    device = trainer.accelerator.device
    devices = [] if device.type == "cpu" else [device]
    python_state, numpy_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=devices, device_type=device.type):
        model.eval()
        try:
            points = trainer.on_eval(trainer)
        finally:
            model.train()
            random.setstate(python_state)
            np.random.set_state(numpy_state)
    trainer.eval_history.extend(points)
    return points


def reached_target(trainer: Trainer, scores: ValScores) -> bool:
    """Whether ``train.target_val_bpb`` is set and these val bits per byte are at or below it (logged when so)."""
    target = trainer.recipe.train.target_val_bpb
    if target is None or scores.bits_per_byte is None or scores.bits_per_byte > target:
        return False
    logger.info("step %d: val bpb %.4f reached train.target_val_bpb=%g after %s tokens and %.1f s of training",
                trainer.step, scores.bits_per_byte, target, f"{trainer.tokens_seen:,}",
                trainer.train_time_s)  # fmt: skip
    return True


# -- SIGTERM ---------------------------------------------------------------------------------------------------------


def _stop_agreed(trainer: Trainer) -> bool:
    """True on every process once any process got SIGTERM (one tiny all-reduce per step when distributed)."""
    if trainer.accelerator.num_processes == 1:
        return trainer.stop_requested
    flag = torch.tensor(float(trainer.stop_requested), device=trainer.accelerator.device)
    return bool(trainer.accelerator.reduce(flag, "sum").item() > 0)


class PreemptionHandler:
    """While active, SIGTERM asks the loop to save a checkpoint at the next step boundary and stop cleanly."""

    def __init__(self, trainer: Trainer) -> None:
        self.trainer = trainer
        self.previous: Any = None

    def _handle(self, signum: int, frame: Any) -> None:
        self.trainer.stop_requested = True

    def __enter__(self) -> PreemptionHandler:
        self.previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        signal.signal(signal.SIGTERM, self.previous)

"""One optimizer step: accumulate micro-batches under ``accelerator.accumulate``, check the loss, clip, set the lr
from :func:`~hf_gpt2.training.optim.lr_at`, step."""

from __future__ import annotations

import math
import time

import torch

from hf_gpt2.errors import HfGPT2Error
from hf_gpt2.training.components import IGNORE_INDEX, compute_loss, to_model_batch
from hf_gpt2.training.distributed import main_decides
from hf_gpt2.training.optim import lr_at, set_lr
from hf_gpt2.training.state import latest_checkpoint
from hf_gpt2.training.trainer import Trainer


class LossNotFiniteError(HfGPT2Error):
    """The training loss became NaN or infinite; the run stopped without saving."""


def optimizer_step(trainer: Trainer) -> tuple[float, float | None, float]:
    """Accumulate ``grad_accum_steps`` micro-batches and take one optimizer step; return (loss, grad norm, lr).

    The mean loss is reduced across processes and checked before the update, so a NaN/inf never reaches the weights.
    """
    accelerator, model, optimizers = trainer.accelerator, trainer.model, trainer.optimizers
    model.train()
    started = time.perf_counter()
    total = torch.zeros((), device=accelerator.device)
    grad_norm, lr = None, lr_at(trainer.step, trainer.recipe.optim, trainer.recipe.train.max_steps)
    if trainer.batches is None:  # started lazily, after a resume has set the loader's position
        trainer.batches = iter(trainer.train_loader)
    micro_batches = [
        to_model_batch(next(trainer.batches), accelerator.device) for _ in range(trainer.plan.grad_accum_steps)
    ]
    num_items = items_per_micro_batch(trainer, micro_batches)
    for batch in micro_batches:
        with accelerator.accumulate(model):
            loss = compute_loss(model, batch, num_items_in_batch=num_items)
            accelerator.backward(loss)
            total += loss.detach()
            if accelerator.sync_gradients:
                mean_loss = accelerator.reduce(total, "mean").item() / trainer.plan.grad_accum_steps
                check_finite(trainer, mean_loss)
                grad_norm = clip_gradients(trainer)
                for optimizer in optimizers:
                    set_lr(optimizer, lr, trainer.recipe.optim)
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
    trainer.window["loss"] += mean_loss
    elapsed = time.perf_counter() - started
    trainer.window["time"] += elapsed
    trainer.train_time_s += elapsed
    trainer.window["steps"] += 1
    return mean_loss, grad_norm, lr


def items_per_micro_batch(trainer: Trainer, micro_batches: list[dict[str, torch.Tensor]]) -> torch.Tensor | None:
    """For SFT, the divisor that makes a step's loss the mean over every trained token of the global batch.

    Masked (-100) targets make micro-batches hold different numbers of trained tokens, so a mean per micro-batch
    would weight a token of a short answer more than one of a long answer. The model divides each micro-batch's
    summed loss by this number; accelerate then divides by the accumulation steps and DDP averages over processes,
    so it is the global count / (accumulation steps × processes). Pretraining windows have no masked targets: None.
    """
    if trainer.recipe.data.format != "sft":
        return None
    local = sum((batch["targets"] != IGNORE_INDEX).sum() for batch in micro_batches)
    total = trainer.accelerator.reduce(local.float(), "sum")
    return total.clamp(min=1) / (len(micro_batches) * trainer.accelerator.num_processes)


def check_finite(trainer: Trainer, loss: float) -> None:
    """Stop the run (every process agrees: the loss is reduced) when the loss is NaN or infinite."""
    if math.isfinite(loss):
        return
    # the main process's answer: on a node without a shared filesystem the checkpoints are on the main node's disk
    last = main_decides(trainer.accelerator.state, lambda: latest_checkpoint(trainer.checkpoint_root))
    kept = f"the last checkpoint {last} is intact" if last else "no checkpoint was written"
    trainer.accelerator.end_training()
    raise LossNotFiniteError(
        f"loss is {loss} at step {trainer.step + 1}; stopped without saving ({kept}); "
        "lower optim.lr or raise optim.warmup_steps, then resume with train.resume_from=latest"
    )


def clip_gradients(trainer: Trainer) -> float | None:
    """Clip to ``train.grad_clip`` (when > 0) and return the global gradient norm before clipping."""
    clip = trainer.recipe.train.grad_clip
    max_norm = clip if clip and clip > 0 else float("inf")
    norm = trainer.accelerator.clip_grad_norm_(trainer.model.parameters(), max_norm)
    return None if norm is None else float(norm)

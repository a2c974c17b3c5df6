"""AdamW with decay groups, and the learning rate as a pure function of the optimizer step."""

from __future__ import annotations

import math
from typing import Any

import torch

from hf_gpt2.errors import RecipeError
from hf_gpt2.recipe import OptimConfig

SCHEDULES = ("cosine", "wsd", "linear", "constant")


def lr_at(step: int, optim: OptimConfig, max_steps: int) -> float:
    """Return the learning rate for optimizer step ``step`` (0-based) of a run of ``max_steps`` steps.

    Linear warmup over ``optim.warmup_steps`` reaches ``optim.lr`` at the last warmup step; then ``optim.schedule``
    decays towards ``optim.min_lr``: ``cosine`` and ``linear`` over the remaining steps, ``wsd`` (warmup, stable,
    decay) holds the peak and decays linearly over the last ``optim.decay_fraction`` of the run, ``constant`` holds it.
    A pure function: resuming at step N gives the same lr as the uninterrupted run, whatever the number of processes.

    Args:
        step: optimizer steps already taken (the lr applies to the step that follows).
        optim: the recipe's ``optim`` section (lr, min_lr, warmup_steps, schedule, decay_fraction).
        max_steps: the run's ``train.max_steps``.
    """
    peak, floor, warmup = optim.lr, optim.min_lr, optim.warmup_steps
    if optim.schedule not in SCHEDULES:
        raise RecipeError(f"optim.schedule={optim.schedule!r} is not one of {', '.join(SCHEDULES)}")
    if step < warmup:
        return peak * (step + 1) / warmup
    if optim.schedule == "constant":
        return peak
    if optim.schedule == "wsd":
        decay_steps = max(1, round(optim.decay_fraction * max_steps))
        start = max(warmup, max_steps - decay_steps)
        progress = (step - start) / max(1, max_steps - start)
        return peak if step < start else peak - min(1.0, progress) * (peak - floor)
    progress = min(1.0, (step - warmup) / max(1, max_steps - warmup))
    if optim.schedule == "linear":
        return peak - progress * (peak - floor)
    return floor + 0.5 * (1.0 + math.cos(math.pi * progress)) * (peak - floor)  # cosine


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Split the trainable parameters into a decayed group (matrices, embeddings) and an undecayed one.

    Every parameter with two or more dimensions (Linear weights, token and position embeddings) decays; biases and
    LayerNorm weights and biases (one dimension) never do. Frozen parameters are left out; tied weights appear once.
    """
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def build_optimizer(model: torch.nn.Module, optim: OptimConfig, device: torch.device) -> torch.optim.AdamW:
    """Return AdamW over :func:`param_groups`; fused on CUDA and CPU unless ``optim.fused`` says otherwise.

    On the 2-core CPU the fused kernel steps a 16M-parameter model 4.6x faster than the default one and allocates
    no per-parameter temporaries (the default one's sqrt and divide of the 51 MB embedding were a training process's
    peak memory).
    """
    groups = [group for group in param_groups(model, optim.weight_decay) if group["params"]]
    if not groups:
        raise RecipeError("no trainable parameters: check train.trainable / train.lora")
    fused = device.type in ("cuda", "cpu") if optim.fused is None else optim.fused
    return torch.optim.AdamW(groups, lr=optim.lr, betas=(optim.beta1, optim.beta2), eps=optim.eps, fused=fused or None)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set ``lr`` on every parameter group."""
    for group in optimizer.param_groups:
        group["lr"] = lr

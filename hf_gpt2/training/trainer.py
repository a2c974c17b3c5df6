"""The run's state (:class:`Trainer`) and how it is built: model, optimizer and loader, prepared once by Accelerate."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from transformers import PreTrainedTokenizerBase

from hf_gpt2.recipe import Recipe
from hf_gpt2.training import metrics
from hf_gpt2.training.components import BatchPlan, apply_finetune_hooks, build_model, check_sharding_support
from hf_gpt2.training.optim import build_optimizer
from hf_gpt2.training.speed import PrefetchLoader, compile_model, configure_backends

OnCheckpoint = Callable[[Path, int], None]
"""Called on the main process with each new checkpoint folder and its step (the pipeline pushes it to the Hub)."""


@dataclass(kw_only=True)
class Trainer:
    """Everything one run holds; the loop's functions read and advance it."""

    recipe: Recipe
    accelerator: Accelerator
    plan: BatchPlan
    run_dir: Path
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    tokenizer: PreTrainedTokenizerBase
    prepared: Any
    """The prepared data the loaders read (``PreparedData``, ``PreparedSFT`` or ``StreamingData``)."""
    loader_cls: Callable[..., Any]
    """Builds a loader: ``loader_cls(prepared, split, block_size, micro_batch_size, seed, process_index=,
    num_processes=)``."""
    train_loader: Any
    """The train loader (behind a GPU prefetcher); its ``state_dict`` is the position saved in checkpoints."""
    batches: Any = None
    step: int = 0
    tokens_seen: int = 0
    flops_per_token: float = 0.0
    peak_flops: float | None = None
    last_val_loss: float | None = None
    last_val_step: int = -1
    stop_requested: bool = False
    on_checkpoint: OnCheckpoint | None = None
    train_time_s: float = 0.0
    started_at: float = field(default_factory=time.time)
    window: dict[str, float] = field(default_factory=lambda: {"loss": 0.0, "time": 0.0, "steps": 0})

    @property
    def checkpoint_root(self) -> Path:
        return self.run_dir / "checkpoints"


def make_loader(recipe: Recipe, prepared: Any, loader_cls: Callable[..., Any], split: str, accelerator: Accelerator):
    """A loader over ``split`` for this process (its slice of every global batch)."""
    return loader_cls(
        prepared,
        split,
        recipe.data.block_size,
        recipe.train.micro_batch_size,
        recipe.run.seed,
        process_index=accelerator.process_index,
        num_processes=accelerator.num_processes,
    )


def build_trainer(
    recipe: Recipe,
    accelerator: Accelerator,
    plan: BatchPlan,
    run_dir: Path,
    *,
    tokenizer: PreTrainedTokenizerBase,
    prepared: Any,
    loader_cls: Callable[..., Any],
) -> Trainer:
    """Build model and optimizer for the prepared data, and ``accelerator.prepare`` them once."""
    configure_backends()  # TF32 and flash SDPA on CUDA; nothing on CPU
    check_sharding_support(accelerator)
    set_seed(recipe.run.seed)  # the same initial weights on every process
    model = apply_finetune_hooks(build_model(recipe, int(prepared.meta["vocab_size"]), tokenizer), recipe)
    if recipe.train.gradient_checkpointing:
        enable_activation_checkpointing(model)
    n_flop_params = metrics.count_flop_params(model)
    optimizer = build_optimizer(model, recipe.optim, accelerator.device)
    if recipe.train.compile:
        compile_model(model)  # in place: parameter names and state_dict keys stay plain
    if accelerator.state.deepspeed_plugin is not None:  # no DataLoader goes through prepare to tell DeepSpeed
        accelerator.state.deepspeed_plugin.deepspeed_config["train_micro_batch_size_per_gpu"] = plan.micro_batch_size
    model, optimizer = accelerator.prepare(model, optimizer)
    set_seed(recipe.run.seed + accelerator.process_index)  # distinct dropout masks per process
    config = accelerator.unwrap_model(model, keep_torch_compile=False).config
    train_loader = make_loader(recipe, prepared, loader_cls, "train", accelerator)
    return Trainer(
        recipe=recipe,
        accelerator=accelerator,
        plan=plan,
        run_dir=run_dir,
        model=model,
        optimizer=optimizer,
        tokenizer=tokenizer,
        prepared=prepared,
        loader_cls=loader_cls,
        train_loader=PrefetchLoader(train_loader, accelerator.device),
        flops_per_token=metrics.flops_per_token(n_flop_params, config.n_layer, config.n_embd, recipe.data.block_size),
        peak_flops=metrics.device_peak_flops(accelerator.device, accelerator.mixed_precision),
    )


def enable_activation_checkpointing(model: torch.nn.Module) -> None:
    """Recompute each block's activations in backward (transformers v5 name; the v4 one on older versions)."""
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)

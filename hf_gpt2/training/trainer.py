"""The run's state (:class:`Trainer`) and how it is built: model, optimizer and loader, prepared once by Accelerate."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType, set_seed
from transformers import PreTrainedTokenizerBase

from hf_gpt2.errors import DataError, RecipeError
from hf_gpt2.recipe import Recipe
from hf_gpt2.tokenization import token_byte_lengths
from hf_gpt2.training import metrics
from hf_gpt2.training.components import BatchPlan, apply_finetune_hooks, build_model, check_sharding_support
from hf_gpt2.training.optim import build_optimizers
from hf_gpt2.training.speed import PrefetchLoader, compile_model, configure_backends

logger = logging.getLogger(__name__)

OnCheckpoint = Callable[[Path, int], None]
"""Called on the main process with each new checkpoint folder and its step (the pipeline pushes it to the Hub)."""

OnEval = Callable[["Trainer"], list[dict[str, Any]]]
"""Called on every process every ``eval.every`` steps with the model in eval mode (the pipeline runs ``eval.tasks``
on a slice); returns the new points of the evaluation history (JSON objects, kept in checkpoints)."""


@dataclass(kw_only=True)
class Trainer:
    """Everything one run holds; the loop's functions read and advance it."""

    recipe: Recipe
    accelerator: Accelerator
    plan: BatchPlan
    run_dir: Path
    model: torch.nn.Module
    optimizers: list[torch.optim.Optimizer]
    """AdamW, and Muon after it with ``optim.name: muon`` (each prepared by Accelerate, saved in checkpoints)."""
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
    last_val_bpb: float | None = None
    byte_lengths: torch.Tensor | None = None
    """UTF-8 bytes of each token id (0 for special tokens) on the device, for the val bits per byte; None when the
    tokenizer is not byte-level."""
    last_val_step: int = -1
    stop_requested: bool = False
    on_checkpoint: OnCheckpoint | None = None
    on_eval: OnEval | None = None
    eval_history: list[dict[str, Any]] = field(default_factory=list)
    """What ``on_eval`` returned so far (restored from the checkpoint on resume)."""
    train_time_s: float = 0.0
    target_reached: bool = False
    """``train.target_val_bpb`` was reached at ``step``: training is over (also for a run resumed from that step)."""
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
    check_optimizer_support(recipe, accelerator)
    optimizers = build_optimizers(model, recipe.optim, accelerator.device)
    if recipe.train.compile:
        compile_model(model)  # in place: parameter names and state_dict keys stay plain
    if accelerator.state.deepspeed_plugin is not None:  # no DataLoader goes through prepare to tell DeepSpeed
        accelerator.state.deepspeed_plugin.deepspeed_config["train_micro_batch_size_per_gpu"] = plan.micro_batch_size
    model, *optimizers = accelerator.prepare(model, *optimizers)
    set_seed(recipe.run.seed + accelerator.process_index)  # distinct dropout masks per process
    config = accelerator.unwrap_model(model, keep_torch_compile=False).config
    train_loader = make_loader(recipe, prepared, loader_cls, "train", accelerator)
    return Trainer(
        recipe=recipe,
        accelerator=accelerator,
        plan=plan,
        run_dir=run_dir,
        model=model,
        optimizers=optimizers,
        tokenizer=tokenizer,
        prepared=prepared,
        loader_cls=loader_cls,
        train_loader=PrefetchLoader(train_loader, accelerator.device),
        flops_per_token=metrics.flops_per_token(n_flop_params, config.n_layer, config.n_embd, recipe.data.block_size),
        peak_flops=metrics.device_peak_flops(accelerator.device, accelerator.mixed_precision),
        byte_lengths=byte_length_table(tokenizer, accelerator.device),
    )


def check_optimizer_support(recipe: Recipe, accelerator: Accelerator) -> None:
    """Refuse Muon where parameters are sharded: it orthogonalizes each whole matrix, which FSDP and DeepSpeed split.

    Raises:
        RecipeError: naming the setups that work.
    """
    sharded = accelerator.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED)
    if recipe.optim.name == "muon" and sharded:
        raise RecipeError(
            f"optim.name=muon is not supported with {accelerator.distributed_type.value} (Muon needs each hidden "
            "matrix whole, which sharding splits); use one process or DDP (accelerate_configs/multi_gpu.yaml), or "
            "optim.name=adamw"
        )


def byte_length_table(tokenizer: PreTrainedTokenizerBase, device: torch.device) -> torch.Tensor | None:
    """:func:`~hf_gpt2.tokenization.token_byte_lengths` as an int64 tensor on ``device``; None (said in the log) for
    a tokenizer that is not byte-level, whose runs then log no bits per byte."""
    try:
        lengths = token_byte_lengths(tokenizer)
    except DataError as err:
        logger.warning("validation bits per byte are not computed: %s", err)
        return None
    return torch.tensor(lengths, dtype=torch.int64, device=device)


def enable_activation_checkpointing(model: torch.nn.Module) -> None:
    """Recompute each block's activations in backward (transformers v5 name; the v4 one on older versions)."""
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)

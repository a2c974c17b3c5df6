"""The training loop: the idiomatic Accelerate loop, in small functions.

``run_training(recipe)`` prepares the data, builds the model and optimizer, prepares them once with Accelerate,
and then for every optimizer step accumulates micro-batches under ``accelerator.accumulate``, clips when gradients
sync, sets the lr from :func:`~hf_gpt2.training.optim.lr_at`, steps, logs, evaluates and checkpoints. At the end it
writes the release (see finish.py).
"""

from __future__ import annotations

import math
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator, DistributedType, PartialState
from accelerate.logging import get_logger
from accelerate.utils import ProjectConfiguration, broadcast_object_list, gather_object, parse_flag_from_env, set_seed
from tqdm.auto import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from hf_gpt2.errors import CheckpointError, DataError, HfGPT2Error
from hf_gpt2.training import checkpointing, metrics
from hf_gpt2.training.components import (
    BatchPlan,
    apply_finetune_hooks,
    build_model,
    check_sharding_support,
    compute_loss,
    load_tokenizer,
    plan_batches,
    to_model_batch,
)
from hf_gpt2.training.optim import build_optimizer, lr_at, set_lr
from hf_gpt2.training.run_folder import checkpoint_on_this_node, resolve_run
from hf_gpt2.training.speed import PrefetchLoader, compile_model, configure_backends

logger = get_logger(__name__)


class LossNotFiniteError(HfGPT2Error):
    """The training loss became NaN or infinite; the run stopped without saving."""


@dataclass(kw_only=True)
class Trainer:
    """Everything one run holds; the loop's functions read and advance it."""

    recipe: Any
    accelerator: Accelerator
    plan: BatchPlan
    run_dir: Path
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    tokenizer: Any
    prepared: Any
    loader_cls: type
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
    pusher: Any = None
    train_time_s: float = 0.0
    started_at: float = field(default_factory=time.time)
    window: dict[str, float] = field(default_factory=lambda: {"loss": 0.0, "time": 0.0, "steps": 0})

    @property
    def checkpoint_root(self) -> Path:
        return self.run_dir / "checkpoints"


def run_training(recipe: Any) -> Path:
    """Train as the recipe says and return the run folder.

    Order matters for bad input: everything is checked (batch plan, run folder, checkpoint, data, model shapes)
    before the run folder is created, so a refused run changes nothing that exists.

    Raises:
        HfGPT2Error: a bad recipe, run folder, checkpoint or data set (one-line message), or a NaN/inf loss.
    """
    started_at = time.time()
    cpu = use_cpu()
    state = PartialState(cpu=cpu)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if state.num_processes != world_size:
        raise RuntimeError(f"launched as {world_size} processes, but accelerate set up {state.num_processes}")
    plan = plan_batches(recipe.train, recipe.data.block_size, state.num_processes)
    from hf_gpt2.pipeline import check_eval_tasks, finish_run

    check_eval_tasks(recipe)
    run_dir, checkpoint = _main_decides(state, lambda: resolve_run(recipe))
    if checkpoint is not None:
        checkpoint = find_checkpoint_everywhere(
            state,
            recipe.train.resume_from,
            checkpoint,
            tokens_per_step=plan.tokens_per_step,
            reshardable=is_reshardable(recipe, state),
        )
    accelerator = Accelerator(
        cpu=cpu,
        gradient_accumulation_steps=plan.grad_accum_steps,
        log_with="tensorboard",
        project_config=ProjectConfiguration(project_dir=str(run_dir), logging_dir=str(run_dir)),
    )
    trainer = build_trainer(recipe, accelerator, plan, run_dir)
    trainer.started_at = started_at
    if checkpoint is not None:
        # before anything is written: a checkpoint that does not fit changes nothing; its files were just verified
        restore(trainer, checkpoint)
    start_run_folder(trainer)
    try:
        with PreemptionHandler(trainer):
            finished = train(trainer)
        if finished:
            finish_run(trainer)
    finally:
        if trainer.pusher is not None:  # a failing run still finishes (or reports) the uploads it submitted
            trainer.pusher.close()
    accelerator.end_training()
    return run_dir


def use_cpu() -> bool:
    """Train on CPU when accelerate says so, or when no accelerator exists (so torchrun on CPUs runs DDP over gloo).

    ``PartialState()`` alone, launched by torchrun on a machine without GPUs, would silently set up independent
    single-process runs.
    """
    if parse_flag_from_env("ACCELERATE_USE_CPU"):
        return True
    has_accelerator = getattr(torch, "accelerator", None)
    return not (has_accelerator.is_available() if has_accelerator else torch.cuda.is_available())


def _main_decides(state: PartialState, decide):
    """Run ``decide`` on the main process and share its result (or its error) with every process."""
    box = [_attempt(decide) if state.is_main_process else None]
    if state.num_processes > 1:
        broadcast_object_list(box)
    return _agreed(box)[0]


def is_reshardable(recipe: Any, state: PartialState) -> bool:
    """Whether this run's state is whole (weights, optimizer) and its data position global, so that a checkpoint
    of it resumes with another number of processes (DDP or one process, and not ``data.streaming``)."""
    sharded = state.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED)
    return not sharded and not (recipe.data.format == "text" and recipe.data.streaming)


def find_checkpoint_everywhere(
    state: PartialState,
    spec: str | None,
    decided: Path,
    *,
    tokens_per_step: int | None = None,
    reshardable: bool = False,
) -> Path:
    """This process's path to the checkpoint the main process chose, verified; every process raises any one's error.

    A process that does not see the main's folder (another node, no shared filesystem) downloads a ``hub:``
    checkpoint into its own node's cache, the node's first process before the others; a local folder it cannot see is
    an error. Every process checks the files (manifest, its own per-process files) and that it found the same step.
    ``tokens_per_step`` and ``reshardable`` say whether another process count may resume it
    (:func:`checkpointing.check_resumable`).

    Raises:
        CheckpointError: on every process, when any process cannot find or verify the checkpoint, or found another.
    """

    def find() -> tuple[Path, dict[str, Any]]:
        path = checkpoint_on_this_node(spec, decided)
        train_state = checkpointing.verify_checkpoint(path)
        checkpointing.check_resumable(
            path,
            train_state,
            state.process_index,
            state.num_processes,
            tokens_per_step=tokens_per_step,
            reshardable=reshardable,
        )
        return path, train_state

    with state.local_main_process_first():  # errors are caught inside, so that every process reaches the barrier
        outcome = _attempt(find)
    found = _agreed(gather_object([outcome]) if state.num_processes > 1 else [outcome])
    main_path, main_state = found[0]
    for index, (path, train_state) in enumerate(found):
        if train_state != main_state:
            raise CheckpointError(
                f"process {index} found checkpoint {path} at step {train_state.get('step')}, the main process "
                f"{main_path} at step {main_state.get('step')}: a newer step was pushed during the resume; start again"
            )
    return found[state.process_index][0]


def _attempt(fn) -> tuple[bool, Any]:
    """(True, what ``fn`` returns) or (False, the project error it raised)."""
    try:
        return True, fn()
    except HfGPT2Error as err:
        return False, err


def _agreed(outcomes: list[tuple[bool, Any]]) -> list[Any]:
    """The results of the processes' attempts, in process order; the first error is raised instead."""
    for ok, value in outcomes:
        if not ok:
            raise value
    return [value for _, value in outcomes]


def build_data(recipe: Any, tokenizer: Any, accelerator: Accelerator) -> tuple[Any, type]:
    """Prepare (or reuse) the tokenized data on the main process first; return it and its loader class.

    ``data.format: text`` gives token shards read by ``TokenWindowLoader``; ``sft`` gives conversations with labels
    read by ``SFTLoader``. Both loaders take the same arguments and restore their position from ``state_dict``.
    """
    with accelerator.main_process_first():
        if recipe.data.format == "sft":
            from hf_gpt2.data.sft import SFTLoader, prepare_sft_data

            return prepare_sft_data(recipe, tokenizer), SFTLoader
        if recipe.data.streaming:
            logger.info("data.streaming: tokenizing %s on the fly (no prepare step)", recipe.data.source)
            from hf_gpt2.data.streaming import StreamingData, StreamingTokenLoader

            return StreamingData(recipe), StreamingTokenLoader.from_data
        from hf_gpt2.data import TokenWindowLoader, prepare_token_shards

        return prepare_token_shards(recipe), TokenWindowLoader


def check_same_tokenizer(accelerator: Accelerator, tokenizer: Any) -> None:
    """Check that every process loaded the same vocabulary (nodes without a shared disk load or train their own).

    Raises:
        DataError: naming the processes whose vocabulary differs from the main process's.
    """
    if accelerator.num_processes == 1:
        return
    from hf_gpt2.data.prepare import vocab_fingerprint

    fingerprints = gather_object([vocab_fingerprint(tokenizer)])
    differ = [index for index, fingerprint in enumerate(fingerprints) if fingerprint != fingerprints[0]]
    if differ:
        raise DataError(
            f"process(es) {differ} loaded another vocabulary than the main process for the tokenizer "
            f"{tokenizer.name_or_path!r}; give every node the same tokenizer files (a shared "
            "data.cache_dir, or the same Hub revision)"
        )


def make_loader(recipe: Any, prepared: Any, loader_cls: type, split: str, accelerator: Accelerator) -> Any:
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


def build_trainer(recipe: Any, accelerator: Accelerator, plan: BatchPlan, run_dir: Path) -> Trainer:
    """Prepare the data, build model, tokenizer and optimizer, and ``accelerator.prepare`` them once."""
    configure_backends()  # TF32 and flash SDPA on CUDA; nothing on CPU
    check_sharding_support(accelerator)
    with accelerator.main_process_first():  # tokenizer.train_new trains once; the other processes reuse it
        tokenizer = load_tokenizer(recipe)
    check_same_tokenizer(accelerator, tokenizer)
    prepared, loader_cls = build_data(recipe, tokenizer, accelerator)
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


def start_run_folder(trainer: Trainer) -> None:
    """Create the run folder, write the resolved recipe.yaml, and open TensorBoard in ``<run>/tb``."""
    from hf_gpt2.recipe import dump_recipe, recipe_to_dict

    accelerator, run_dir = trainer.accelerator, trainer.run_dir
    if accelerator.is_main_process:
        (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        dump_recipe(trainer.recipe, run_dir / "recipe.yaml")
    accelerator.wait_for_everyone()
    # On resume, TensorBoard drops the events a killed run logged after its last checkpoint (they are redone).
    purge = {"tensorboard": {"purge_step": trainer.step + 1}} if trainer.step else {}
    accelerator.init_trackers("tb", config=_hparams(recipe_to_dict(trainer.recipe)), init_kwargs=purge)
    hub = trainer.recipe.hub
    if hub.push_checkpoints and hub.repo_id and accelerator.is_main_process:
        from hf_gpt2.hub import CheckpointPusher

        trainer.pusher = CheckpointPusher(hub)
    logger.info(
        "run %s: %d process(es) on %s, mixed precision %s, %d × %d tokens × %d accumulation = %d tokens per step",
        run_dir,
        accelerator.num_processes,
        accelerator.device,
        accelerator.mixed_precision,
        trainer.plan.micro_batch_size,
        trainer.plan.block_size,
        trainer.plan.grad_accum_steps,
        trainer.plan.tokens_per_step,
    )


def _hparams(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten the recipe to the scalar values TensorBoard's hparams accept."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_hparams(value, f"{name}."))
        elif isinstance(value, (int, float, str, bool)):
            flat[name] = value
        else:
            flat[name] = str(value)
    return flat


def restore(trainer: Trainer, checkpoint: Path) -> None:
    """Load a checkpoint (verified by ``find_checkpoint_everywhere``): weights, optimizer, RNGs, data, step."""
    accelerator = trainer.accelerator
    train_state, data_state = checkpointing.load_checkpoint(
        accelerator,
        checkpoint,
        verified=True,
        tokens_per_step=trainer.plan.tokens_per_step,
        reshardable=is_reshardable(trainer.recipe, accelerator.state),
    )
    trainer.train_loader.load_state_dict(data_state)
    trainer.step = int(train_state["step"])
    saved = int(train_state.get("num_processes", 1))
    if saved != accelerator.num_processes:
        if accelerator.process_index >= saved:  # no saved RNG states: a fresh, distinct stream for this step
            set_seed(trainer.recipe.run.seed + 1_000_003 * trainer.step + accelerator.process_index)
        logger.warning(
            "resuming %s, saved by %d process(es), with %d: the same weights, optimizer state, data stream and "
            "global batch (%d tokens per step); dropout masks and float rounding differ from a run that kept %d",
            checkpoint, saved, accelerator.num_processes, trainer.plan.tokens_per_step, saved, main_process_only=True,
        )  # fmt: skip
    trainer.tokens_seen = int(train_state.get("tokens_seen", trainer.step * trainer.plan.tokens_per_step))
    trainer.train_time_s = float(train_state.get("train_time_s", 0.0))
    logger.info("resumed from %s at step %d", checkpoint, trainer.step)


def save(trainer: Trainer) -> Path:
    """Write a checkpoint of the current step (every process takes part)."""
    state = {
        "step": trainer.step,
        "tokens_seen": trainer.tokens_seen,
        "train_time_s": trainer.train_time_s,
        "tokens_per_step": trainer.plan.tokens_per_step,
        "reshardable": is_reshardable(trainer.recipe, trainer.accelerator.state),
    }
    path = checkpointing.save_checkpoint(
        trainer.accelerator,
        trainer.checkpoint_root,
        state,
        trainer.train_loader.state_dict(),
        trainer.recipe.train.keep_last,
    )
    if trainer.pusher is not None and trainer.accelerator.is_main_process:
        trainer.pusher.submit(path, trainer.step)
    return path


def intervals(recipe: Any) -> tuple[int, int, int]:
    """(log_every, eval_every, save_every) in optimizer steps; 0 turns eval or save off (the end is always evaluated).

    Dev mode logs every step and evaluates every 10 steps at most.
    """
    log_every, eval_every = recipe.run.log_every, recipe.train.eval_every
    if recipe.run.dev:
        log_every, eval_every = 1, min(eval_every, 10) or 10
    return max(1, log_every), eval_every, recipe.train.save_every


def train(trainer: Trainer) -> bool:
    """Run optimizer steps up to ``train.max_steps``; return False when stopped early by SIGTERM."""
    recipe, accelerator = trainer.recipe, trainer.accelerator
    log_every, eval_every, save_every = intervals(recipe)
    bar = tqdm(
        total=recipe.train.max_steps, initial=trainer.step, desc="train", disable=not accelerator.is_local_main_process
    )
    with logging_redirect_tqdm(), bar:  # log lines print above the bar instead of through it
        while trainer.step < recipe.train.max_steps:
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
                log_val_loss(trainer)
            if save_every and trainer.step % save_every == 0:
                save(trainer)
    return True


def saved_at_this_step(trainer: Trainer) -> bool:
    """Whether the newest checkpoint is of the current step, as the main process sees it.

    Every process gets the main's answer: saving takes every process, and on a node that does not share the main's
    filesystem there is no checkpoint to see.
    """

    def newest_is_this_step() -> bool:
        latest = checkpointing.latest_checkpoint(trainer.checkpoint_root)
        return latest is not None and latest.name == f"step-{trainer.step}"

    return _main_decides(trainer.accelerator.state, newest_is_this_step)


def optimizer_step(trainer: Trainer) -> tuple[float, float | None, float]:
    """Accumulate ``grad_accum_steps`` micro-batches and take one optimizer step; return (loss, grad norm, lr).

    The mean loss is reduced across processes and checked before the update, so a NaN/inf never reaches the weights.
    """
    accelerator, model, optimizer = trainer.accelerator, trainer.model, trainer.optimizer
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
                set_lr(optimizer, lr)
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
    local = sum((batch["targets"] != -100).sum() for batch in micro_batches)
    total = trainer.accelerator.reduce(local.float(), "sum")
    return total.clamp(min=1) / (len(micro_batches) * trainer.accelerator.num_processes)


def check_finite(trainer: Trainer, loss: float) -> None:
    """Stop the run (every process agrees: the loss is reduced) when the loss is NaN or infinite."""
    if math.isfinite(loss):
        return
    # the main process's answer: on a node without a shared filesystem the checkpoints are on the main node's disk
    last = _main_decides(trainer.accelerator.state, lambda: checkpointing.latest_checkpoint(trainer.checkpoint_root))
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


@torch.no_grad()
def val_loss(trainer: Trainer) -> float:
    """Mean loss over ``train.eval_batches`` validation batches, split across processes and gathered.

    The validation windows are the same at every evaluation (a fresh loader with the run's seed).
    """
    accelerator, recipe = trainer.accelerator, trainer.recipe
    loader = make_loader(recipe, trainer.prepared, trainer.loader_cls, "val", accelerator)
    n_batches = max(1, math.ceil(recipe.train.eval_batches / accelerator.num_processes))
    trainer.model.eval()
    losses = torch.stack(
        [compute_loss(trainer.model, to_model_batch(next(loader), accelerator.device)) for _ in range(n_batches)]
    )
    trainer.model.train()
    return accelerator.gather(losses).float().mean().item()


def log_val_loss(trainer: Trainer) -> float:
    """Evaluate, log ``val/loss`` and remember it for eval.json."""
    loss = val_loss(trainer)
    trainer.last_val_loss, trainer.last_val_step = loss, trainer.step
    trainer.accelerator.log({"val/loss": loss}, step=trainer.step)
    logger.info("step %d | val loss %.4f | val ppl %.2f", trainer.step, loss, math.exp(min(loss, 50.0)))
    return loss


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


__all__ = ["LossNotFiniteError", "Trainer", "run_training", "train", "optimizer_step", "val_loss"]

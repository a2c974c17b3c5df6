"""The start of a run, before any work: the processes, the batch plan, the run folder and the checkpoint to resume.

Everything is decided and checked here (by the main process, shared with the others) before anything is written, so
a refused run changes nothing that exists. The main process also takes the run folder's lock
(:mod:`~hf_gpt2.training.run_lock`), so that a second run with the same ``run.name`` is refused while this one lives.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from accelerate import Accelerator, PartialState
from accelerate.utils import ProjectConfiguration

from hf_gpt2.recipe import Recipe
from hf_gpt2.training.components import BatchPlan, check_sharding_support, plan_batches
from hf_gpt2.training.distributed import find_checkpoint_everywhere, is_reshardable, main_decides, use_cpu
from hf_gpt2.training.run_folder import Download, resolve_run
from hf_gpt2.training.run_lock import RunLock, lock_run_folder


@dataclass(kw_only=True)
class Launch:
    """A run that has been decided: its accelerator, batch plan, run folder and checkpoint (None: a fresh run)."""

    accelerator: Accelerator
    plan: BatchPlan
    run_dir: Path
    checkpoint: Path | None
    lock: RunLock | None = None
    """The run folder's lock, on the main process (None on the others)."""
    started_at: float = field(default_factory=time.time)

    def release(self) -> None:
        """Give the run folder's lock up (the run folder goes too when nothing was written there)."""
        if self.lock is not None:
            self.lock.release()


def launch(recipe: Recipe, *, download: Download | None = None) -> Launch:
    """Set up the processes, decide the run folder and checkpoint and lock the folder; writes nothing else.

    Call :meth:`Launch.release` when the run ends (or fails).

    Args:
        recipe: the resolved recipe.
        download: fetches a ``hub:`` checkpoint (``train.resume_from``) into a local folder.

    Raises:
        HfGPT2Error: a bad batch plan, run folder or checkpoint, an unsupported sharding, or a run folder in use
            by another run (one-line message).
    """
    started_at = time.time()
    cpu = use_cpu()
    state = PartialState(cpu=cpu)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if state.num_processes != world_size:
        raise RuntimeError(f"launched as {world_size} processes, but accelerate set up {state.num_processes}")
    plan = plan_batches(recipe.train, recipe.data.block_size, state.num_processes)
    locks: list[RunLock] = []  # the main process's lock stays here; the others only learn the folder

    def decide() -> tuple[Path, Path | None]:
        run_dir, checkpoint, lock = claim_run_folder(recipe, download=download)
        locks.append(lock)
        return run_dir, checkpoint

    run_dir, checkpoint = main_decides(state, decide)
    try:
        if checkpoint is not None:
            checkpoint = find_checkpoint_everywhere(
                state,
                recipe.train.resume_from,
                checkpoint,
                download=download,
                tokens_per_step=plan.tokens_per_step,
                reshardable=is_reshardable(recipe, state),
                optimizer=recipe.optim.name,
            )
        accelerator = Accelerator(
            cpu=cpu,
            gradient_accumulation_steps=plan.grad_accum_steps,
            log_with="tensorboard",
            project_config=ProjectConfiguration(project_dir=str(run_dir), logging_dir=str(run_dir)),
        )
        check_sharding_support(accelerator)
    except BaseException:
        for lock in locks:
            lock.release()
        raise
    return Launch(
        accelerator=accelerator,
        plan=plan,
        run_dir=run_dir,
        checkpoint=checkpoint,
        lock=locks[0] if locks else None,
        started_at=started_at,
    )


def claim_run_folder(recipe: Recipe, *, download: Download | None = None) -> tuple[Path, Path | None, RunLock]:
    """Lock the run folder and decide it and the checkpoint under the lock (on the main process).

    A named run is locked before it is looked at, so that a run already working there is reported as such (and
    not as a folder that exists); an unnamed one is locked once its folder is chosen.

    Raises:
        HfGPT2Error: the folder is in use by another run, or :func:`resolve_run` refuses it.
    """
    named = Path(recipe.run.output_dir) / recipe.run.name if recipe.run.name else None
    lock = lock_run_folder(named) if named is not None else None
    try:
        run_dir, checkpoint = resolve_run(recipe, download=download)
        if lock is None or lock.run_dir != run_dir:  # resume_from named another run's folder
            other = lock_run_folder(run_dir)
            if lock is not None:
                lock.release()
            lock = other
    except BaseException:
        if lock is not None:
            lock.release()
        raise
    return run_dir, checkpoint, lock

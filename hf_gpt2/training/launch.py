"""The start of a run, before any work: the processes, the batch plan, the run folder and the checkpoint to resume.

Everything is decided and checked here (by the main process, shared with the others) before anything is written, so
a refused run changes nothing that exists.
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


@dataclass(kw_only=True)
class Launch:
    """A run that has been decided: its accelerator, batch plan, run folder and checkpoint (None: a fresh run)."""

    accelerator: Accelerator
    plan: BatchPlan
    run_dir: Path
    checkpoint: Path | None
    started_at: float = field(default_factory=time.time)


def launch(recipe: Recipe, *, download: Download | None = None) -> Launch:
    """Set up the processes and decide the run folder and checkpoint; writes nothing.

    Args:
        recipe: the resolved recipe.
        download: fetches a ``hub:`` checkpoint (``train.resume_from``) into a local folder.

    Raises:
        HfGPT2Error: a bad batch plan, run folder or checkpoint, or an unsupported sharding (one-line message).
    """
    started_at = time.time()
    cpu = use_cpu()
    state = PartialState(cpu=cpu)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if state.num_processes != world_size:
        raise RuntimeError(f"launched as {world_size} processes, but accelerate set up {state.num_processes}")
    plan = plan_batches(recipe.train, recipe.data.block_size, state.num_processes)
    run_dir, checkpoint = main_decides(state, lambda: resolve_run(recipe, download=download))
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
    return Launch(accelerator=accelerator, plan=plan, run_dir=run_dir, checkpoint=checkpoint, started_at=started_at)

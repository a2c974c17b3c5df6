"""How the processes of a run agree: the main process decides and shares, any one's error is everyone's.

A run on several processes (and nodes, possibly without a shared filesystem) must take the same decisions everywhere:
which run folder and checkpoint, whether a step is saved, whether every process loaded the same vocabulary. Each
helper here runs its check where it must run and raises the same project error on every process, so that no process
is left waiting at a barrier for one that failed.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import torch
from accelerate import Accelerator, DistributedType, PartialState
from accelerate.utils import broadcast_object_list, gather_object, parse_flag_from_env
from transformers import PreTrainedTokenizerBase

from hf_gpt2.errors import CheckpointError, DataError, HfGPT2Error
from hf_gpt2.recipe import Recipe
from hf_gpt2.tokenization import vocab_fingerprint
from hf_gpt2.training import checkpointing
from hf_gpt2.training.run_folder import Download, checkpoint_on_this_node
from hf_gpt2.training.state import TrainState

T = TypeVar("T")


def use_cpu() -> bool:
    """Train on CPU when accelerate says so, or when no accelerator exists (so torchrun on CPUs runs DDP over gloo).

    ``PartialState()`` alone, launched by torchrun on a machine without GPUs, would silently set up independent
    single-process runs.
    """
    if parse_flag_from_env("ACCELERATE_USE_CPU"):
        return True
    has_accelerator = getattr(torch, "accelerator", None)
    return not (has_accelerator.is_available() if has_accelerator else torch.cuda.is_available())


def main_decides(state: PartialState, decide: Callable[[], T]) -> T:
    """Run ``decide`` on the main process and share its result (or its error) with every process."""
    box = [attempt(decide) if state.is_main_process else None]
    if state.num_processes > 1:
        broadcast_object_list(box)
    return agreed(box)[0]


def attempt(fn: Callable[[], T]) -> tuple[bool, T | HfGPT2Error]:
    """(True, what ``fn`` returns) or (False, the project error it raised)."""
    try:
        return True, fn()
    except HfGPT2Error as err:
        return False, err


def agreed(outcomes: list[tuple[bool, Any]]) -> list[Any]:
    """The results of the processes' attempts, in process order; the first error is raised instead."""
    for ok, value in outcomes:
        if not ok:
            raise value
    return [value for _, value in outcomes]


def is_reshardable(recipe: Recipe, state: PartialState) -> bool:
    """Whether this run's state is whole (weights, optimizer) and its data position global, so that a checkpoint
    of it resumes with another number of processes (DDP or one process, and not ``data.streaming``)."""
    sharded = state.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED)
    return not sharded and not (recipe.data.format == "text" and recipe.data.streaming)


def find_checkpoint_everywhere(
    state: PartialState,
    spec: str | None,
    decided: Path,
    *,
    download: Download | None = None,
    tokens_per_step: int | None = None,
    reshardable: bool = False,
    optimizer: str | None = None,
) -> Path:
    """This process's path to the checkpoint the main process chose, verified; every process raises any one's error.

    A process that does not see the main's folder (another node, no shared filesystem) fetches a ``hub:``
    checkpoint with ``download`` into its own node's cache, the node's first process before the others; a local
    folder it cannot see is an error. Every process checks the files (manifest, its own per-process files) and that
    it found the same step. ``tokens_per_step`` and ``reshardable`` say whether another process count may resume it,
    ``optimizer`` is the run's ``optim.name`` (:func:`checkpointing.check_resumable`).

    Raises:
        CheckpointError: on every process, when any process cannot find or verify the checkpoint, or found another.
    """

    def find() -> tuple[Path, TrainState]:
        path = checkpoint_on_this_node(spec, decided, download=download)
        train_state = checkpointing.verify_checkpoint(path)
        checkpointing.check_resumable(
            path,
            train_state,
            state.process_index,
            state.num_processes,
            tokens_per_step=tokens_per_step,
            reshardable=reshardable,
            optimizer=optimizer,
        )
        return path, train_state

    with state.local_main_process_first():  # errors are caught inside, so that every process reaches the barrier
        outcome = attempt(find)
    found = agreed(gather_object([outcome]) if state.num_processes > 1 else [outcome])
    main_path, main_state = found[0]
    for index, (path, train_state) in enumerate(found):
        if train_state != main_state:
            raise CheckpointError(
                f"process {index} found checkpoint {path} at step {train_state.step}, the main process "
                f"{main_path} at step {main_state.step}: a newer step was pushed during the resume; start again"
            )
    return found[state.process_index][0]


def check_same_tokenizer(accelerator: Accelerator, tokenizer: PreTrainedTokenizerBase) -> None:
    """Check that every process loaded the same vocabulary (nodes without a shared disk load or train their own).

    Raises:
        DataError: naming the processes whose vocabulary differs from the main process's.
    """
    if accelerator.num_processes == 1:
        return
    fingerprints = gather_object([vocab_fingerprint(tokenizer)])
    differ = [index for index, fingerprint in enumerate(fingerprints) if fingerprint != fingerprints[0]]
    if differ:
        raise DataError(
            f"process(es) {differ} loaded another vocabulary than the main process for the tokenizer "
            f"{tokenizer.name_or_path!r}; give every node the same tokenizer files (a shared "
            "data.cache_dir, or the same Hub revision)"
        )

"""Resume state: `accelerator.save_state` plus the step, the data position and every RNG, written atomically.

A checkpoint folder ``checkpoints/step-N/`` holds what ``accelerator.save_state`` writes (model, optimizer, one
``random_states_<rank>.pkl`` per process with the python/numpy/torch/CUDA generators), one ``data_state_<rank>.pt``
per process (the loader position), ``train_state.json`` (a :class:`~hf_gpt2.training.state.TrainState`: step, tokens,
process count) and ``manifest.json`` (sha256 of
every file, checked before loading so that a damaged file is named). It is written to ``checkpoints/.tmp-step-N/`` and
renamed when complete, so a run killed mid-save leaves the previous checkpoints intact; a save that fails (a full
disk) removes its temporary folder before it reports the error, so the disk is as free as before and a resume
after freeing space continues from the last complete checkpoint.

The folder is complete on the main process's filesystem even when the nodes of a multi-node run share none: every
process that does not see the main's temporary folder (it lacks the main's marker file) sends its own per-process
files to the main process, which writes them, and removes the folder that ``save_state`` created on its own node.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import re
import secrets
import shutil
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import broadcast_object_list, gather_object

from hf_gpt2.errors import CheckpointError
from hf_gpt2.folders import STAGING_PREFIX, missing_folders, replace_folder, storage_errors
from hf_gpt2.training.state import TrainState, checkpoint_dirs

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
_TMP_PREFIX = STAGING_PREFIX
_MAIN_MARKER = ".main-process-token"
"""Written by the main process into the temporary folder; another process that reads the same token shares it."""
_PER_PROCESS_FILE = re.compile(r"^(random_states|data_state)_\d+\.(pkl|pt)$")


def data_state_name(process_index: int) -> str:
    """The file of one process's loader position."""
    return f"data_state_{process_index}.pt"


def random_states_name(process_index: int) -> str:
    """The file of one process's RNG states, as ``accelerator.save_state`` names it."""
    return f"random_states_{process_index}.pkl"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 24), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST)


def write_manifest(folder: Path) -> None:
    """Write ``manifest.json``: the sha256 and size of every file in ``folder``."""
    entries = {str(p.relative_to(folder)): {"sha256": _sha256(p), "bytes": p.stat().st_size} for p in _files(folder)}
    (folder / MANIFEST).write_text(json.dumps(entries, indent=1, sort_keys=True))


def verify_checkpoint(folder: Path) -> TrainState:
    """Check every file of a checkpoint against its manifest and return its train state.

    Raises:
        CheckpointError: naming the missing, truncated or altered file.
    """
    if not folder.is_dir():
        raise CheckpointError(f"checkpoint {folder} does not exist")
    manifest_path = folder / MANIFEST
    try:
        manifest = json.loads(manifest_path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {folder} is incomplete: {manifest_path} is missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"checkpoint file {manifest_path} is corrupt ({err})") from None
    for name, entry in manifest.items():
        path = folder / name
        if not path.is_file():
            raise CheckpointError(f"checkpoint file {path} is missing")
        if path.stat().st_size != entry["bytes"] or _sha256(path) != entry["sha256"]:
            raise CheckpointError(f"checkpoint file {path} is corrupt (its sha256 differs from {MANIFEST})")
    return read_train_state(folder)


def read_train_state(folder: Path) -> TrainState:
    """The checkpoint's ``train_state.json`` (step, tokens, process count)."""
    return TrainState.read(folder)


def save_checkpoint(
    accelerator: Accelerator, root: Path, train_state: TrainState, data_state: dict[str, Any], keep_last: int
) -> Path:
    """Save a checkpoint of the prepared objects, the data position and the train state; every process calls this.

    Args:
        accelerator: the run's accelerator (its prepared model and optimizer are saved with ``save_state``).
        root: the run's ``checkpoints/`` folder, as this process sees it (on another node it may be another disk).
        train_state: the run's counters (``num_processes`` is set here).
        data_state: this process's loader ``state_dict()``.
        keep_last: keep this many newest checkpoints (0 keeps all).

    Returns:
        The new ``root/step-N`` folder (complete on the main process's filesystem).

    Raises:
        CheckpointError: a process that does not share the main's filesystem wrote files other than its own
            per-process ones (sharded states), which the checkpoint on the main's filesystem would lack.
        StorageError: the disk is full or refuses the write (naming the checkpoint); the temporary folder is gone.
    """
    step = train_state.step
    final, tmp = root / f"step-{step}", root / f"{_TMP_PREFIX}step-{step}"
    new_parents = missing_folders(root)  # before anyone creates them: what save_state makes on another disk
    try:
        with storage_errors(final, staging=tmp):
            token = _start_tmp(accelerator, tmp)
            accelerator.save_state(str(tmp))
            torch.save(data_state, tmp / data_state_name(accelerator.process_index))
            accelerator.wait_for_everyone()
            shares_main = _holds_token(tmp, token)
            sent = _gather_per_process_files(accelerator, tmp, shares_main)
            if not shares_main:
                _remove_stray(tmp, new_parents)
            _check_nothing_stranded(tmp, sent)
            if accelerator.is_main_process:
                _complete(tmp, final, dataclasses.replace(train_state, num_processes=accelerator.num_processes), sent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # a half-written checkpoint must not keep the disk full
        raise
    if accelerator.is_main_process:
        rotate_checkpoints(root, keep_last)
        logger.info("saved checkpoint %s", final)
    accelerator.wait_for_everyone()
    return final


def _complete(tmp: Path, final: Path, train_state: TrainState, sent: list[tuple[dict, list]]) -> None:
    """On the main process: add the files other nodes sent, the train state and the manifest; rename to ``final``."""
    senders = [rank for rank, (files, _) in enumerate(sent) if files]
    for files, _ in sent:
        for name, data in files.items():
            (tmp / name).write_bytes(data)
    if senders:
        logger.info("%s: wrote the per-process files sent by processes %s", final.name, senders)
    (tmp / _MAIN_MARKER).unlink()
    train_state.write(tmp)
    write_manifest(tmp)
    replace_folder(tmp, final)


def _start_tmp(accelerator: Accelerator, tmp: Path) -> str:
    """Create an empty ``tmp`` with the marker on the main process; return the marker's token to every process."""
    box = [secrets.token_hex(16) if accelerator.is_main_process else None]
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        (tmp / _MAIN_MARKER).write_text(box[0])
    if accelerator.num_processes > 1:
        broadcast_object_list(box)  # also the barrier: nobody looks for tmp before it exists
    return box[0]


def _holds_token(folder: Path, token: str) -> bool:
    try:
        return (folder / _MAIN_MARKER).read_text() == token
    except OSError:
        return False


def _gather_per_process_files(accelerator: Accelerator, tmp: Path, shares_main: bool) -> list[tuple[dict, list]]:
    """Every process's ``({name: bytes} of its per-process files, other files in its folder)``.

    Both are empty for a process that shares the main's folder; a process that does not sends its RNG states and
    data position, and names the rest of its folder (the files that ``save_state`` wrote there for any process).
    """
    files: dict[str, bytes] = {}
    others: list[str] = []
    if not shares_main:
        mine = (random_states_name(accelerator.process_index), data_state_name(accelerator.process_index))
        files = {name: (tmp / name).read_bytes() for name in mine}
        others = [str(p.relative_to(tmp)) for p in _files(tmp) if not _PER_PROCESS_FILE.match(p.name)]
    if accelerator.num_processes == 1:
        return [(files, others)]
    return gather_object([(files, others)])


def _remove_stray(tmp: Path, new_parents: list[Path]) -> None:
    """Remove the node-local temporary folder (never the main's) and the parents that ``save_state`` created."""
    shutil.rmtree(tmp, ignore_errors=True)  # other processes of this node may be removing it too
    for folder in new_parents:
        try:
            folder.rmdir()
        except OSError:  # not empty, or already removed by another process of this node
            break


def _check_nothing_stranded(tmp: Path, sent: list[tuple[dict, list]]) -> None:
    stranded = sorted({name for _, others in sent for name in others})
    if stranded:
        raise CheckpointError(
            f"checkpoint {tmp.name.removeprefix(_TMP_PREFIX)} is incomplete: {', '.join(stranded[:5])} were written "
            "on a node that does not share the main process's filesystem (sharded model or optimizer states); "
            "put run.output_dir on a filesystem every node shares"
        )


def rotate_checkpoints(root: Path, keep_last: int) -> None:
    """Delete all but the newest ``keep_last`` checkpoints (0 keeps all) and temporary checkpoint folders left
    behind."""
    for stale in root.glob(f"{_TMP_PREFIX}step-*"):
        shutil.rmtree(stale, ignore_errors=True)
    if keep_last > 0:
        for old in checkpoint_dirs(root)[:-keep_last]:
            shutil.rmtree(old, ignore_errors=True)


def check_resumable(
    folder: Path,
    train_state: TrainState,
    process_index: int,
    num_processes: int,
    *,
    tokens_per_step: int | None = None,
    reshardable: bool = False,
    optimizer: str | None = None,
) -> None:
    """Check that this process can resume from ``folder``: its own files are there, the optimizer (``optim.name``)
    is the saved one, and the process count is the saved one, or may change.

    The process count may change when both the checkpoint and this run are reshardable (whole weights and optimizer
    state, as DDP and one process save them, and a data position counted over all processes, as the token-window
    and SFT loaders keep it) and the global batch (``tokens_per_step``) is the saved one. A process beyond the saved
    count then reads process 0's data position and starts its RNGs afresh.

    Raises:
        CheckpointError: the process count differs and may not (naming why), the optimizer differs, or this
            process's files are missing.
    """
    if optimizer is not None and optimizer != train_state.optimizer:
        raise CheckpointError(
            f"checkpoint {folder} holds the state of optim.name={train_state.optimizer}; resume it with "
            f"optim.name={train_state.optimizer}, not {optimizer} (or start a new run from its weights with "
            f"model.init={folder})"
        )
    saved = train_state.num_processes
    if saved != num_processes:
        reasons = _why_not_reshardable(train_state, tokens_per_step, reshardable)
        if reasons:
            raise CheckpointError(
                f"checkpoint {folder} was saved by {saved} processes; resume it with {saved} processes, "
                f"not {num_processes} ({'; '.join(reasons)})"
            )
    if process_index < saved:
        names = [random_states_name(process_index), data_state_name(process_index)]
    else:
        names = [data_state_name(0)]
    missing = [name for name in names if not (folder / name).is_file()]
    if missing:
        raise CheckpointError(
            f"checkpoint {folder} is incomplete: it has no {' and no '.join(missing)} for process {process_index}"
        )


def _why_not_reshardable(train_state: TrainState, tokens_per_step: int | None, reshardable: bool) -> list[str]:
    reasons = []
    if not train_state.reshardable:
        reasons.append(
            "it holds per-process state: FSDP/DeepSpeed shards, a streaming data position, or it predates "
            "process-count changes"
        )
    if not reshardable:
        reasons.append("this run keeps per-process state (FSDP, DeepSpeed or data.streaming)")
    saved_tokens = train_state.tokens_per_step
    if saved_tokens is not None and tokens_per_step is not None and saved_tokens != tokens_per_step:
        reasons.append(
            f"its global batch was {saved_tokens:,} tokens per step, this run's is {tokens_per_step:,}: set "
            f"train.global_batch_tokens={saved_tokens} (and train.grad_accum_steps=null) to keep it"
        )
    return reasons


def load_checkpoint(
    accelerator: Accelerator,
    folder: Path,
    *,
    verified: bool = False,
    tokens_per_step: int | None = None,
    reshardable: bool = False,
    optimizer: str | None = None,
) -> tuple[TrainState, dict[str, Any]]:
    """Restore a checkpoint into the prepared objects and the RNGs; return (train state, this process's data state).

    Args:
        verified: this process has just checked ``folder`` against its manifest (``verify_checkpoint``), so its
            files are not hashed a second time.
        tokens_per_step, reshardable: this run's global batch and whether it may resume with another process count
            (see :func:`check_resumable`). A process beyond the saved count keeps its RNGs as they are.
        optimizer: this run's ``optim.name``, which must be the saved one.

    Raises:
        CheckpointError: a file is missing or corrupt, the checkpoint was saved with another number of processes
            and may not be resumed with this one, or with another optimizer.
    """
    train_state = read_train_state(folder) if verified else verify_checkpoint(folder)
    index = accelerator.process_index
    check_resumable(folder, train_state, index, accelerator.num_processes, tokens_per_step=tokens_per_step,
                    reshardable=reshardable, optimizer=optimizer)  # fmt: skip
    try:
        accelerator.load_state(str(folder))
    except Exception as err:  # any failure to deserialise: a damaged or foreign checkpoint
        raise CheckpointError(f"cannot load checkpoint {folder}: {type(err).__name__}: {err}") from err
    own = index < train_state.num_processes
    data_path = folder / data_state_name(index if own else 0)  # a global position: the same in every process's file
    try:
        data_state = torch.load(data_path, weights_only=False)
    except Exception as err:
        raise CheckpointError(f"checkpoint file {data_path} is unreadable ({err})") from err
    return train_state, data_state

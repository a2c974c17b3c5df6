"""Resume state: `accelerator.save_state` plus the step, the data position and every RNG, written atomically.

A checkpoint folder ``checkpoints/step-N/`` holds what ``accelerator.save_state`` writes (model, optimizer, one
``random_states_<rank>.pkl`` per process with the python/numpy/torch/CUDA generators), one ``data_state_<rank>.pt``
per process (the loader position), ``train_state.json`` (step, tokens, process count) and ``manifest.json`` (sha256 of
every file, checked before loading so that a damaged file is named). It is written to ``checkpoints/.tmp-step-N/`` and
renamed when complete, so a run killed mid-save leaves the previous checkpoints intact.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator

from hf_gpt2.errors import CheckpointError

logger = logging.getLogger(__name__)

TRAIN_STATE = "train_state.json"
MANIFEST = "manifest.json"
_STEP_DIR = re.compile(r"^step-(\d+)$")
_TMP_PREFIX = ".tmp-"


def checkpoint_dirs(root: Path) -> list[Path]:
    """Return the complete checkpoints under ``root`` (``step-N`` folders), oldest first."""
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := _STEP_DIR.match(p.name))]
    return [path for _, path in sorted(found)]


def latest_checkpoint(root: Path) -> Path | None:
    """Return the newest complete checkpoint under ``root``, or None."""
    dirs = checkpoint_dirs(root)
    return dirs[-1] if dirs else None


def is_checkpoint(path: Path) -> bool:
    """True when ``path`` looks like a checkpoint folder (it has a train_state.json)."""
    return (path / TRAIN_STATE).is_file()


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


def verify_checkpoint(folder: Path) -> dict[str, Any]:
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
    try:
        return json.loads((folder / TRAIN_STATE).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise CheckpointError(f"checkpoint file {folder / TRAIN_STATE} is unreadable ({err})") from None


def save_checkpoint(
    accelerator: Accelerator, root: Path, train_state: dict[str, Any], data_state: dict[str, Any], keep_last: int
) -> Path:
    """Save a checkpoint of the prepared objects, the data position and the train state; every process calls this.

    Args:
        accelerator: the run's accelerator (its prepared model and optimizer are saved with ``save_state``).
        root: the run's ``checkpoints/`` folder.
        train_state: JSON-able counters; must hold ``step``.
        data_state: this process's loader ``state_dict()``.
        keep_last: keep this many newest checkpoints (0 keeps all).

    Returns:
        The new ``root/step-N`` folder.
    """
    step = train_state["step"]
    final, tmp = root / f"step-{step}", root / f"{_TMP_PREFIX}step-{step}"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    torch.save(data_state, tmp / f"data_state_{accelerator.process_index}.pt")
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        state = {**train_state, "num_processes": accelerator.num_processes}
        (tmp / TRAIN_STATE).write_text(json.dumps(state, indent=1))
        write_manifest(tmp)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        rotate_checkpoints(root, keep_last)
        logger.info("saved checkpoint %s", final)
    accelerator.wait_for_everyone()
    return final


def rotate_checkpoints(root: Path, keep_last: int) -> None:
    """Delete all but the newest ``keep_last`` checkpoints (0 keeps all) and stale temporary folders."""
    for stale in root.glob(f"{_TMP_PREFIX}*"):
        shutil.rmtree(stale, ignore_errors=True)
    if keep_last > 0:
        for old in checkpoint_dirs(root)[:-keep_last]:
            shutil.rmtree(old, ignore_errors=True)


def load_checkpoint(accelerator: Accelerator, folder: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Restore a checkpoint into the prepared objects and the RNGs; return (train state, this process's data state).

    Raises:
        CheckpointError: a file is missing or corrupt, or the checkpoint was saved with another number of processes.
    """
    train_state = verify_checkpoint(folder)
    saved = train_state.get("num_processes", 1)
    if saved != accelerator.num_processes:
        raise CheckpointError(
            f"checkpoint {folder} was saved by {saved} processes; resume it with {saved} processes, "
            f"not {accelerator.num_processes}"
        )
    try:
        accelerator.load_state(str(folder))
    except Exception as err:  # any failure to deserialise: a damaged or foreign checkpoint
        raise CheckpointError(f"cannot load checkpoint {folder}: {type(err).__name__}: {err}") from err
    data_path = folder / f"data_state_{accelerator.process_index}.pt"
    try:
        data_state = torch.load(data_path, weights_only=False)
    except Exception as err:
        raise CheckpointError(f"checkpoint file {data_path} is unreadable ({err})") from err
    return train_state, data_state

"""Checkpoints as files, without torch: the ``checkpoints/step-N`` layout and ``train_state.json``.

``train_state.json`` is what a checkpoint says about its run, one schema (:class:`TrainState`) for the writer
(:func:`hf_gpt2.training.checkpointing.save_checkpoint`) and every reader: the resume path, the cloud relaunch and the
model card. Files written before a field existed still load: every field but ``step`` has a default.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hf_gpt2.errors import CheckpointError

TRAIN_STATE = "train_state.json"
_STEP_DIR = re.compile(r"^step-(\d+)$")


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


@dataclass(frozen=True, kw_only=True)
class TrainState:
    """The counters of a run at a checkpoint."""

    step: int
    """Optimizer steps taken."""
    tokens_seen: int | None = None
    """Tokens trained on (over all processes); None in checkpoints that predate it (then step × tokens_per_step)."""
    train_time_s: float = 0.0
    """Seconds spent in optimizer steps (not in evaluation, checkpointing or start-up)."""
    tokens_per_step: int | None = None
    """The global batch in tokens; a resume with another process count must keep it."""
    reshardable: bool = False
    """Whether the state is whole and the data position global, so another number of processes may resume it."""
    num_processes: int = 1
    """Processes that wrote the checkpoint."""
    optimizer: str = "adamw"
    """``optim.name`` of the run, whose optimizer states the checkpoint holds (``adamw`` before Muon existed)."""
    target_reached: bool = False
    """The run reached ``train.target_val_bpb`` at this step, so its training is over: resuming it finishes the
    release without training."""
    eval_history: list[dict[str, Any]] = field(default_factory=list)
    """The evaluations of ``eval.tasks`` during training up to this step (``eval.json``'s ``history`` points), kept
    here so that a resumed run, from this folder or from the Hub, keeps exactly the points of the steps it resumes
    after."""

    def to_json(self) -> dict[str, Any]:
        """The JSON object written to ``train_state.json``."""
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any], where: str = TRAIN_STATE) -> TrainState:
        """Read the JSON object of ``train_state.json``.

        Raises:
            CheckpointError: it is not an object with an int ``step``, or it has keys this schema does not know.
        """
        known = {f.name for f in dataclasses.fields(cls)}
        if not isinstance(data, Mapping) or not isinstance(data.get("step"), int):
            raise CheckpointError(f"{where} has no integer 'step'; it is not a train state of hf_gpt2 ({data!r:.80})")
        unknown = sorted(set(data) - known)
        if unknown:
            raise CheckpointError(f"{where} has keys {unknown} that a train state does not have ({sorted(known)})")
        history = data.get("eval_history", [])
        if not isinstance(history, list) or not all(isinstance(p, Mapping) and isinstance(p.get("step"), int)
                                                    for p in history):  # fmt: skip
            raise CheckpointError(f"{where}: eval_history should be a list of objects with an integer 'step'")
        return cls(**data)

    def write(self, folder: Path) -> Path:
        """Write ``folder/train_state.json``."""
        path = folder / TRAIN_STATE
        path.write_text(json.dumps(self.to_json(), indent=1))
        return path

    @classmethod
    def read(cls, folder: Path) -> TrainState:
        """Read ``folder/train_state.json``.

        Raises:
            CheckpointError: the file is missing, unreadable, or not a train state.
        """
        path = folder / TRAIN_STATE
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise CheckpointError(f"checkpoint file {path} is unreadable ({err})") from None
        return cls.from_json(data, where=str(path))

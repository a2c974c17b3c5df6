"""Where benchmark documents come from: a local file or folder (``--data TASK=PATH``), or the task's Hub dataset.

Local jsonl/json and parquet files are read directly by the pretraining data's reader
(:func:`hf_gpt2.data.sources.read_rows`: stdlib json, pyarrow), so no ``datasets`` cache is written and nothing
touches the network. Hub datasets load through ``datasets.load_dataset``, from parquet revisions where the main branch
still holds a loading script (datasets ≥ 4 refuses those).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets

from hf_gpt2 import online
from hf_gpt2.data.sources import Unreadable, read_rows
from hf_gpt2.errors import DataError

logger = logging.getLogger(__name__)

RECORD_SUFFIXES = (".jsonl", ".json", ".parquet")


@dataclass(frozen=True, slots=True)
class HubSource:
    """A split of a Hub dataset: ``repo`` + ``config`` + ``split``, or explicit ``data_files`` (``hf://`` parquet).

    ``data_files`` downloads only that split's files; ``load_dataset(repo, config)`` prepares every split of the
    config (WikiText-103's train split alone is ~300 MB). With ``data_files``, ``repo`` and ``config`` only describe
    the source (model cards cite them).
    """

    repo: str
    split: str
    config: str | None = None
    data_files: str | None = None

    def describe(self) -> str:
        """The exact files (``data_files``) or dataset loaded, for logs and error messages."""
        if self.data_files:
            return self.data_files
        return self.label()

    def label(self) -> str:
        """``repo (config), split S``: the dataset and split, for tables."""
        return f"{self.repo}" + (f" ({self.config})" if self.config else "") + f", split {self.split}"

    def load(self, task: str) -> list[dict[str, Any]]:
        """Download (or reuse the cache of) the split and return its rows."""
        logger.info("loading %s from the Hub", self.describe())
        local = f"pass a local copy with --data {task}=PATH"
        online.require_hub_reachable(f"load {task}'s data ({self.describe()})", local)
        try:
            if self.data_files:
                dataset = datasets.load_dataset("parquet", data_files={self.split: self.data_files}, split=self.split)
            else:
                dataset = datasets.load_dataset(self.repo, self.config, split=self.split)
        except (ConnectionError, OSError, FileNotFoundError) as err:
            network = online.network_problem(err, f"load {task}'s data ({self.describe()})")
            if network is not None and not online.hub_offline():
                raise DataError(f"{task}: {network}; or pass a local copy with --data {task}=PATH") from err
            raise DataError(
                f"{task}: could not load {self.describe()} from the Hub ({type(err).__name__}: {err}); without "
                f"network, pass a local copy with --data {task}=PATH"
            ) from err
        return dataset.to_list()


def resolve_path(task: str, path: str | Path) -> Path:
    """Return ``path`` as an existing Path, or raise a DataError that names the task."""
    resolved = Path(path).expanduser()
    if not resolved.exists():
        raise DataError(
            f"{task}: data path {str(path)!r} does not exist; give an existing file or folder: --data {task}=PATH"
        )
    return resolved


def record_files(task: str, path: Path) -> list[Path]:
    """The jsonl/json/parquet files at ``path`` (the file itself, or the matching files of a folder, sorted)."""
    if path.is_file():
        return [path]
    files = sorted(p for p in path.iterdir() if p.is_file() and p.name.endswith(RECORD_SUFFIXES))
    if not files:
        raise DataError(f"{task}: the folder {path} holds no {'/'.join(RECORD_SUFFIXES)} files")
    return files


def read_records(task: str, files: Iterable[Path], *, allow_empty: bool = False) -> list[dict[str, Any]]:
    """Read rows from jsonl, json (a list of objects) and parquet files; no rows at all is an error unless
    ``allow_empty`` (for a caller that explains an empty file itself).

    The files are read by the pretraining data's reader (:func:`hf_gpt2.data.sources.read_rows`), so a line that is
    not UTF-8 or not JSON, or a damaged parquet file, is an error naming the file, the line and the fix.
    """
    rows: list[dict[str, Any]] = []
    for file in files:
        if file.suffix not in RECORD_SUFFIXES:
            raise DataError(f"{task}: cannot read {file}; expected one of {', '.join(RECORD_SUFFIXES)}")
        for _, row in read_rows(file):
            if isinstance(row, Unreadable):
                raise DataError(f"{task}: {row.message()}")
            rows.append(row)
    if not rows and not allow_empty:
        raise DataError(f"{task}: no rows in {', '.join(str(f) for f in files)}")
    return rows


def load_records(task: str, path: str | Path | None, hub: HubSource | None) -> list[dict[str, Any]]:
    """Rows for a task from a local file/folder when ``path`` is given, else from its Hub source."""
    if path is not None:
        resolved = resolve_path(task, path)
        return read_records(task, record_files(task, resolved))
    if hub is None:
        raise DataError(f"{task} has no default data source; pass --data {task}=PATH")
    return hub.load(task)


def require_fields(task: str, rows: list[dict[str, Any]], fields: Iterable[str]) -> None:
    """Raise a DataError naming the missing fields if the first row lacks any of them."""
    missing = [f for f in fields if f not in rows[0]]
    if missing:
        raise DataError(
            f"{task}: the data rows have no {', '.join(map(repr, missing))} field; found {sorted(rows[0])}"
        )

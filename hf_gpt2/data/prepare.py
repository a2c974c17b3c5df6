"""Token shards: a source's documents tokenized once (EOS after each), split into train and val, cached by fingerprint.

Layout under ``data.cache_dir/<fingerprint>/``::

    meta.json            {"splits": {"train": {"num_tokens": N, "num_documents": D, "shards": [...]}, "val": ...},
                          "tokenizer": "gpt2", "eos_id": 50256, "dtype": "uint16", "vocab_size": 50257,
                          "fingerprint": "...", "source": {...}, ...}
    train_000000.bin     raw little-endian uint16 token ids (uint32 when the vocabulary exceeds 65535)
    val_000000.bin

Summed over the splits, ``num_tokens`` is exactly Σ(len(tokens(doc)) + 1) over the non-empty documents read (the two
pieces of a lone document counting as two documents).
The split is by document and deterministic: documents 0, ⌈1/f⌉, ... (evenly spaced, f = ``data.val_fraction``) go to
val, so val always has at least one document; a source of one document is cut in two for it, its last f characters
held out (:func:`hf_gpt2.data.split.split_lone_document`). Tokenization runs in ``data.num_proc`` processes over
chunks of about 1 MB of text, with at most a few chunks in flight, so memory stays flat on corpora of any size. The
GPT-2 BPE goes through tiktoken (6–9× faster than HF tokenizers, identical ids); any other tokenizer through
transformers. With GPT-2's BPE nothing here imports torch or transformers (``hf-gpt2 prepare`` starts in a fraction
of a second): :mod:`hf_gpt2.tokenization`, which needs transformers, is loaded by name only for the other tokenizers.
The folder is written under a temporary name and renamed, so a crash never leaves a half-written cache behind.
"""

from __future__ import annotations

import collections
import hashlib
import importlib
import itertools
import json
import logging
import multiprocessing
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from hf_gpt2.data.sources import (
    DocumentSource,
    count_hint,
    iter_documents,
    require_source_reachable,
    resolve_source,
)
from hf_gpt2.data.split import split_lone_document, val_mask
from hf_gpt2.errors import DataError
from hf_gpt2.folders import staged_folder
from hf_gpt2.gpt2_bpe import TokenizerSpec, gpt2_spec, load_gpt2_tiktoken, tiktoken_batch_encoder
from hf_gpt2.recipe import Recipe, effective_max_documents

logger = logging.getLogger(__name__)

LAYOUT_VERSION = 1
SPLITS = ("train", "val")
CHUNK_CHARS = 1 << 20
"""Characters of text per tokenization task (documents are never cut)."""
MAX_CHUNK_DOCUMENTS = 4096


@dataclass(frozen=True)
class PreparedData:
    """A prepared token cache: its folder, its ``meta.json`` and whether it was reused rather than built now."""

    directory: Path
    meta: dict[str, Any]
    reused: bool = False

    @property
    def dtype(self) -> np.dtype:
        """The on-disk dtype of the shards (little-endian uint16 or uint32)."""
        return np.dtype(self.meta["dtype"]).newbyteorder("<")

    def num_tokens(self, split: str) -> int:
        """Tokens in a split (``train`` or ``val``)."""
        return int(self._split(split)["num_tokens"])

    def shard_paths(self, split: str) -> list[Path]:
        """The ``.bin`` files of a split, in order."""
        return [self.directory / name for name in self._split(split)["shards"]]

    def read_tokens(self, split: str) -> np.ndarray:
        """Return a whole split as one in-memory array (for tests and small data; the loader memory-maps)."""
        parts = [np.fromfile(p, dtype=self.dtype) for p in self.shard_paths(split)]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=self.dtype)

    def _split(self, split: str) -> dict[str, Any]:
        try:
            return self.meta["splits"][split]
        except KeyError:
            raise DataError(f"{self.directory} has no split {split!r}; splits: {list(self.meta['splits'])}") from None


def prepare_token_shards(recipe: Recipe, *, force: bool = False) -> PreparedData:
    """Tokenize the recipe's ``data.source`` into train/val token shards, or reuse the cache from an earlier run.

    Call it on the main process first (``with accelerator.main_process_first():``); concurrent callers are safe
    (the first to finish wins, the others reuse its folder).

    Args:
        recipe: a :class:`hf_gpt2.recipe.Recipe` (uses ``data.*``, ``tokenizer.*`` and ``run.dev``).
        force: rebuild even when a valid cache exists.

    Raises:
        DataError: if the source is missing, empty, too small to split, or the tokenizer cannot be loaded.
    """
    data = recipe.data
    if data.format != "text":
        raise DataError(
            f"prepare_token_shards reads data.format='text'; data.format={data.format!r} uses hf_gpt2.data.sft"
        )
    source = resolve_source(data)
    tokenizer = spec_of(recipe)
    max_documents = effective_max_documents(recipe)
    fingerprint = shard_fingerprint(source, tokenizer, data.val_fraction, max_documents)
    cache_dir = Path(data.cache_dir).expanduser()
    directory = cache_dir / fingerprint
    if not force:
        existing = load_prepared(directory, fingerprint)
        if existing is not None:
            logger.info("reusing token shards %s (%s train tokens)", directory, f"{existing.num_tokens('train'):,}")
            return check_fits_block_size(existing, data.block_size)
    require_source_reachable(source)  # a Hub source: before a staging folder is made
    settings = {
        "fingerprint": fingerprint,
        "source_spec": data.source,
        "source": source.describe(),
        "val_fraction": data.val_fraction,
        "max_documents": max_documents,
        "shard_tokens": data.shard_tokens,
    }
    prepared = _build(directory, source, tokenizer, settings, max_documents, _num_proc(data.num_proc))
    return check_fits_block_size(prepared, data.block_size)


def spec_of(recipe: Recipe) -> TokenizerSpec:
    """The recipe's tokenizer spec: GPT-2's without transformers; any other through :mod:`hf_gpt2.tokenization`."""
    if recipe.tokenizer.name == "gpt2" and not recipe.tokenizer.train_new:
        return gpt2_spec()
    return importlib.import_module("hf_gpt2.tokenization").tokenizer_spec(recipe)


def check_fits_block_size(prepared: PreparedData, block_size: int) -> PreparedData:
    """Return ``prepared`` if both splits hold at least one loader window (2 × block_size tokens).

    Checked here, before training starts, rather than at the first evaluation.

    Raises:
        DataError: naming the split, its size and the fixes.
    """
    for split in SPLITS:
        if prepared.num_tokens(split) < 2 * block_size:
            fix = "raise data.val_fraction, " if split == "val" else ""
            raise DataError(
                f"the {split} split of data.source={prepared.meta.get('source_spec')!r} has "
                f"{prepared.num_tokens(split):,} tokens, fewer than 2 × data.block_size = {2 * block_size:,}; "
                f"{fix}lower data.block_size or add data"
            )
    return prepared


def load_prepared(directory: str | Path, fingerprint: str | None = None) -> PreparedData | None:
    """Return the prepared data in ``directory`` if its meta.json and every shard are complete, else None."""
    directory = Path(directory)
    try:
        meta = json.loads((directory / "meta.json").read_text(encoding="utf-8"))
        prepared = PreparedData(directory=directory, meta=meta, reused=True)
        if fingerprint is not None and meta.get("fingerprint") != fingerprint:
            return None
        for split in SPLITS:
            sizes = sum(p.stat().st_size for p in prepared.shard_paths(split))
            if sizes != prepared.num_tokens(split) * prepared.dtype.itemsize:
                raise ValueError(f"{split} shards hold {sizes} bytes, not {prepared.num_tokens(split)} tokens")
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, DataError) as err:
        logger.warning("ignoring the incomplete token cache %s (%s); preparing it again", directory, err)
        return None
    return prepared


def shard_fingerprint(
    source: DocumentSource, tokenizer: TokenizerSpec, val_fraction: float, max_documents: int | None
) -> str:
    """Return the cache folder name: a readable slug plus a hash of everything that changes the shards' content."""
    key = {
        "layout": LAYOUT_VERSION,
        "source": source.describe(),
        "tokenizer": tokenizer.description,
        "val_fraction": val_fraction,
        "max_documents": max_documents,
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    tokenizer_slug = tokenizer.name.rstrip("/").split("/")[-1].replace(".", "-")[:20]
    return f"{source.short_name()}-{tokenizer_slug}-{digest}"


def shard_dtype(vocab_size: int) -> np.dtype:
    """Little-endian uint16 when every id fits (vocab ≤ 65536), else uint32."""
    return np.dtype("<u2") if vocab_size <= 1 << 16 else np.dtype("<u4")


# --------------------------------------------------------------------------------------------------------------------
# Building


def _build(
    directory: Path,
    source: DocumentSource,
    tokenizer: TokenizerSpec,
    settings: dict[str, Any],
    max_documents: int | None,
    num_proc: int,
) -> PreparedData:
    with staged_folder(directory) as stage:
        dtype = shard_dtype(tokenizer.vocab_size)
        writers = {split: _ShardWriter(stage.path, split, dtype, settings["shard_tokens"]) for split in SPLITS}
        started = time.perf_counter()
        documents = split_lone_document(iter_documents(source, max_documents), settings["val_fraction"])
        total = count_hint(source)
        if max_documents is not None and total is not None:
            total = min(total, max_documents)
        logger.info("tokenizing %s with %s in %d process(es) → %s", settings["source_spec"], tokenizer.name,
                    num_proc, directory)  # fmt: skip
        for train_ids, val_ids, n_train, n_val in _tokenize(
            documents, tokenizer, settings["val_fraction"], num_proc, total
        ):
            writers["train"].write(train_ids, n_train)
            writers["val"].write(val_ids, n_val)
        splits = {split: writer.close() for split, writer in writers.items()}
        seconds = time.perf_counter() - started
        _check_not_empty(splits, settings)
        meta = {
            "splits": splits,
            "tokenizer": tokenizer.name,
            "tokenizer_info": tokenizer.description,
            "eos_id": tokenizer.eos_id,
            "dtype": dtype.name,
            "vocab_size": tokenizer.vocab_size,
            **settings,
            "layout_version": LAYOUT_VERSION,
            "seconds": round(seconds, 3),
        }
        meta = json.loads(json.dumps(meta))  # the same plain lists and dicts a reader of meta.json gets
        (stage.path / "meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    n_tokens = sum(s["num_tokens"] for s in splits.values())
    logger.info("prepared %s tokens in %.1f s (%s tokens/s): %s train, %s val", f"{n_tokens:,}", seconds,
                f"{n_tokens / max(seconds, 1e-9):,.0f}", f"{splits['train']['num_tokens']:,}",
                f"{splits['val']['num_tokens']:,}")  # fmt: skip
    if stage.placed:
        return PreparedData(directory=directory, meta=meta, reused=False)
    existing = load_prepared(directory, meta["fingerprint"])  # another process published the same fingerprint first
    if existing is None:
        raise DataError(f"another process left an incomplete {directory} while this one prepared it; run again")
    return existing


def _check_not_empty(splits: dict[str, dict[str, Any]], settings: dict[str, Any]) -> None:
    n_docs = sum(s["num_documents"] for s in splits.values())
    where = f"data.source={settings['source_spec']!r}"
    if n_docs == 0:
        raise DataError(f"{where} holds no text (every document is empty); point data.source at files with text")
    if splits["train"]["num_documents"] == 0:  # one document of one character: nothing to cut in two
        raise DataError(f"{where} holds a single document too short to split into train and val; add text")


class _ShardWriter:
    """Appends token arrays to ``<split>_NNNNNN.bin`` files of at most ``shard_tokens`` tokens each."""

    def __init__(self, directory: Path, split: str, dtype: np.dtype, shard_tokens: int) -> None:
        self.directory, self.split, self.dtype, self.shard_tokens = directory, split, dtype, shard_tokens
        self.shards: list[str] = []
        self.num_tokens = self.num_documents = self._in_shard = 0
        self._file: Any = None

    def write(self, tokens: np.ndarray, num_documents: int) -> None:
        self.num_documents += num_documents
        tokens = tokens.astype(self.dtype, copy=False)
        while tokens.size:
            if self._file is None or self._in_shard == self.shard_tokens:
                self._open_next()
            take = min(tokens.size, self.shard_tokens - self._in_shard)
            self._file.write(tokens[:take].tobytes())
            self._in_shard += take
            self.num_tokens += take
            tokens = tokens[take:]

    def close(self) -> dict[str, Any]:
        if self._file is None:
            self._open_next()  # an empty split still has one (empty) shard, so readers need no special case
        self._file.close()
        return {"num_tokens": self.num_tokens, "num_documents": self.num_documents, "shards": self.shards}

    def _open_next(self) -> None:
        if self._file is not None:
            self._file.close()
        name = f"{self.split}_{len(self.shards):06d}.bin"
        self.shards.append(name)
        self._file = open(self.directory / name, "wb")  # closed by close() or the next _open_next()
        self._in_shard = 0


# --------------------------------------------------------------------------------------------------------------------
# Tokenizing (in worker processes)

_ENCODE: Any = None
"""The worker's encode-a-batch-of-documents function, set once per process by :func:`_init_worker`."""
_ENCODE_DTYPE: Any = np.uint32


def _init_worker(tokenizer: TokenizerSpec, in_worker: bool = True) -> None:
    global _ENCODE, _ENCODE_DTYPE
    _ENCODE_DTYPE = shard_dtype(tokenizer.vocab_size)
    if in_worker:  # each worker is one process's worth of parallelism already
        os.environ["TOKENIZERS_PARALLELISM"] = "false"
    if tokenizer.uses_tiktoken:
        _ENCODE = tiktoken_batch_encoder()
    else:
        _ENCODE = importlib.import_module("hf_gpt2.tokenization").batch_encoder(tokenizer)


def _encode_chunk(task: tuple[int, list[str], float, int]) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Tokenize one chunk of documents; return (train ids, val ids, train docs, val docs), EOS after each doc."""
    start, docs, val_fraction, eos_id = task
    is_val = val_mask(start, len(docs), val_fraction)
    out: dict[bool, list[int]] = {False: [], True: []}
    for ids, val in zip(_ENCODE(docs), is_val.tolist(), strict=True):
        target = out[val]
        target.extend(ids)
        target.append(eos_id)
    n_val = int(is_val.sum())
    dtype = _ENCODE_DTYPE  # the shards' dtype: uint16 halves what travels back from the worker
    return np.array(out[False], dtype=dtype), np.array(out[True], dtype=dtype), len(docs) - n_val, n_val


def _tokenize(
    documents: Iterable[str], tokenizer: TokenizerSpec, val_fraction: float, num_proc: int, total: int | None
) -> Iterator[tuple[np.ndarray, np.ndarray, int, int]]:
    """Yield tokenized chunks in document order, with a progress bar; at most 2 × num_proc chunks in flight."""
    tasks = ((start, docs, val_fraction, tokenizer.eos_id) for start, docs in _chunks(documents))
    bar = tqdm(total=total, unit="doc", desc="tokenizing", mininterval=1.0, dynamic_ncols=True)
    n_tokens = 0
    try:
        for result in _map_ordered(tasks, tokenizer, num_proc):
            n_tokens += result[0].size + result[1].size
            bar.update(result[2] + result[3])
            bar.set_postfix_str(f"{n_tokens / 1e6:,.1f}M tokens", refresh=False)
            yield result
    finally:
        bar.close()


def _map_ordered(
    tasks: Iterator[tuple[int, list[str], float, int]], tokenizer: TokenizerSpec, num_proc: int
) -> Iterator[tuple[np.ndarray, np.ndarray, int, int]]:
    first, second = next(tasks, None), next(tasks, None)
    tasks = itertools.chain([t for t in (first, second) if t is not None], tasks)
    if num_proc <= 1 or second is None:  # one chunk (about 1 MB of text) is not worth starting processes for
        _init_worker(tokenizer, in_worker=False)
        yield from map(_encode_chunk, tasks)
        return
    context = multiprocessing.get_context()
    if tokenizer.uses_tiktoken and context.get_start_method() == "fork":
        load_gpt2_tiktoken()  # built once here; forked workers inherit it instead of each building their own
    with context.Pool(num_proc, initializer=_init_worker, initargs=(tokenizer,)) as pool:
        pending: collections.deque = collections.deque()
        for task in tasks:
            pending.append(pool.apply_async(_encode_chunk, (task,)))
            if len(pending) >= 2 * num_proc:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()


def _chunks(documents: Iterable[str]) -> Iterator[tuple[int, list[str]]]:
    """Group documents into chunks of about :data:`CHUNK_CHARS` characters; yield (index of first doc, docs)."""
    start, chunk, chars = 0, [], 0
    for doc in documents:
        chunk.append(doc)
        chars += len(doc)
        if chars >= CHUNK_CHARS or len(chunk) >= MAX_CHUNK_DOCUMENTS:
            yield start, chunk
            start, chunk, chars = start + len(chunk), [], 0
    if chunk:
        yield start, chunk


def _num_proc(num_proc: int) -> int:
    if num_proc > 0:
        return num_proc
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)

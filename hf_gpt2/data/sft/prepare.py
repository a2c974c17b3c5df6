"""SFT preparation: read the rows (from the pretraining sources), tokenize, split and cache them.

The rows come from :func:`hf_gpt2.data.sources.iter_records` (local jsonl/json/parquet files or ``hub:<id>``), are
turned into conversations (:mod:`~hf_gpt2.data.sft.formats`) and tokenized with labels
(:mod:`~hf_gpt2.data.sft.template`). A row left with no trained token (for instance truncated away by
``data.block_size``) is a :class:`DataError` that names it, never a silently dropped sample. The result lives in
``data.cache_dir/sft-<fingerprint>/`` (written atomically) and is reused while nothing that shapes it changes.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from transformers import PreTrainedTokenizerBase

from hf_gpt2.data.sft.formats import Message, detect_sft_format, record_to_messages
from hf_gpt2.data.sft.template import (
    CHAT_TEMPLATE,
    IGNORE_INDEX,
    SFTExample,
    install_chat_template,
    tokenize_conversations,
)
from hf_gpt2.data.sources import DocumentSource, iter_records, resolve_source
from hf_gpt2.errors import DataError
from hf_gpt2.folders import staged_folder
from hf_gpt2.recipe import DataConfig, Recipe, effective_max_documents
from hf_gpt2.tokenization import vocab_fingerprint

logger = logging.getLogger(__name__)

_SFT_LAYOUT_VERSION = 1  # bump when rendering or tokenization changes, so older caches are not reused


@dataclass
class SFTSplit:
    """The tokenized examples of one split, concatenated: example i is ``ids[offsets[i]:offsets[i+1]]``."""

    ids: np.ndarray
    trained: np.ndarray
    offsets: np.ndarray

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def example(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """(input_ids, labels) of example i as int64 arrays."""
        lo, hi = self.offsets[i], self.offsets[i + 1]
        ids = self.ids[lo:hi].astype(np.int64)
        return ids, np.where(self.trained[lo:hi], ids, IGNORE_INDEX)


@dataclass
class PreparedSFT:
    """Tokenized SFT data in ``data.cache_dir/sft-<fingerprint>/`` (same role as ``PreparedData`` for text)."""

    directory: Path
    meta: dict[str, Any]
    reused: bool

    def split(self, name: str) -> SFTSplit:
        """Memory-map one split ("train" or "val").

        Raises:
            DataError: if the split does not exist or is empty.
        """
        if name not in self.meta["splits"] or self.meta["splits"][name]["num_examples"] == 0:
            raise DataError(
                f"the prepared SFT data in {self.directory} has no {name!r} examples; "
                "raise data.val_fraction or give more rows"
            )
        load = lambda suffix: np.load(self.directory / f"{name}_{suffix}.npy", mmap_mode="r")  # noqa: E731
        return SFTSplit(ids=load("ids"), trained=load("trained"), offsets=load("offsets"))


def prepare_sft_data(recipe: Recipe, tokenizer: PreTrainedTokenizerBase, *, force: bool = False) -> PreparedSFT:
    """Read, tokenize, split and cache the SFT data of ``recipe.data``; reuse the cache when nothing changed.

    Also installs :data:`CHAT_TEMPLATE` on ``tokenizer``, so the release saved with it carries the template.
    Run it on the main process first (``accelerator.main_process_first()``); writes are atomic.

    Raises:
        DataError: for a missing source, unreadable rows, or a sample with no trained token.
    """
    data = recipe.data
    if data.streaming:
        raise DataError("data.streaming is not supported for data.format=sft; SFT sets are read whole")
    install_chat_template(tokenizer)
    source = resolve_source(data)
    fingerprint = _fingerprint(recipe, tokenizer, source)
    directory = Path(data.cache_dir) / f"sft-{fingerprint}"
    if (directory / "meta.json").is_file() and not force:
        logger.info("reusing tokenized SFT data in %s", directory)
        return PreparedSFT(directory, json.loads((directory / "meta.json").read_text()), reused=True)
    records = list(iter_records(source, effective_max_documents(recipe)))
    if not records:
        raise DataError(f"data.source={data.source!r} has no rows")
    sft_format = detect_sft_format(list(records[0]), data)
    where = [f"#{i} of {_source_name(source)}" for i in range(len(records))]
    conversations = [record_to_messages(r, sft_format, data, w) for r, w in zip(records, where, strict=True)]
    examples, kept = _tokenize_with_policy(conversations, tokenizer, data, where)
    if len(examples) < 2:
        raise DataError(
            f"data.source={data.source!r} gives {len(examples)} SFT example; it takes at least 2, one of them held "
            "out for validation: add rows"
        )
    meta = {
        "format": "sft",
        "sft_format": sft_format,
        "source": data.source,
        "tokenizer": str(getattr(tokenizer, "name_or_path", "")),
        "eos_id": tokenizer.eos_token_id,
        "pad_id": tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
        "vocab_size": len(tokenizer),
        "block_size": data.block_size,
        "packing": bool(data.packing),
        "fingerprint": fingerprint,
        "skipped_rows": sorted(set(range(len(records))) - set(kept)),
        "splits": {},
    }
    val_ids = _val_indices(len(examples), data.val_fraction, recipe.run.seed)
    val_set = set(val_ids.tolist())
    with staged_folder(directory) as stage:  # not placed: another process wrote the same fingerprint; equal data
        for name, members in (("train", [i for i in range(len(examples)) if i not in val_set]), ("val", val_ids)):
            meta["splits"][name] = _write_split(stage.path, name, [examples[i] for i in members], len(tokenizer))
        (stage.path / "meta.json").write_text(json.dumps(meta, indent=1))
    train, val = meta["splits"]["train"], meta["splits"]["val"]
    logger.info(
        "SFT data (%s, %s): %d train / %d val examples, %d train tokens of which %d trained; cached in %s",
        sft_format, data.source, train["num_examples"], val["num_examples"], train["num_tokens"],
        train["num_trained"], directory,
    )  # fmt: skip
    return PreparedSFT(directory, meta, reused=False)


def _tokenize_with_policy(
    conversations: list[list[Message]], tokenizer: PreTrainedTokenizerBase, data: DataConfig, where: list[str]
) -> tuple[list[SFTExample], list[int]]:
    """Tokenize; with ``data.sft_untrainable: skip`` leave out untrainable rows, logged by index (never silently)."""
    policy = data.sft_untrainable
    if policy not in ("error", "skip"):
        raise DataError(f"data.sft_untrainable={policy!r} is not one of error, skip")
    examples, kept = [], []
    for start in range(0, len(conversations), 1024):
        chunk = slice(start, start + 1024)
        try:
            examples += tokenize_conversations(conversations[chunk], tokenizer, data.block_size, where[chunk])
            kept += list(range(len(conversations)))[chunk]
        except DataError:
            if policy == "error":
                raise
            for i in range(*chunk.indices(len(conversations))):  # one by one to find the culprits
                try:
                    examples += tokenize_conversations([conversations[i]], tokenizer, data.block_size, [where[i]])
                    kept.append(i)
                except DataError as err:
                    logger.warning("skipping (data.sft_untrainable=skip): %s", err)
    if not examples:
        raise DataError(f"no SFT sample of {data.source!r} has a trained token")
    if len(kept) < len(conversations):
        logger.warning("skipped %d of %d SFT samples with no trained token", len(conversations) - len(kept),
                       len(conversations))  # fmt: skip
    return examples, kept


def _write_split(directory: Path, name: str, examples: list[SFTExample], vocab_size: int) -> dict[str, int]:
    lengths = np.asarray([len(e.input_ids) for e in examples], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    dtype = np.uint16 if vocab_size <= 65536 else np.uint32
    ids = np.fromiter((t for e in examples for t in e.input_ids), dtype=np.int64, count=int(offsets[-1]))
    trained = np.fromiter((t != IGNORE_INDEX for e in examples for t in e.labels), dtype=bool, count=int(offsets[-1]))
    np.save(directory / f"{name}_ids.npy", ids.astype(dtype))
    np.save(directory / f"{name}_trained.npy", trained)
    np.save(directory / f"{name}_offsets.npy", offsets)
    return {"num_examples": len(examples), "num_tokens": int(offsets[-1]), "num_trained": int(trained.sum())}


def _val_indices(n: int, fraction: float, seed: int) -> np.ndarray:
    """Seed-fixed held-out examples: round(n × fraction), at least 1 when fraction > 0 and n ≥ 2."""
    count = min(n - 1, max(1 if fraction > 0 else 0, round(n * fraction)))
    return np.sort(np.random.default_rng([seed, 7]).permutation(n)[: max(count, 0)])


def _source_name(source: DocumentSource) -> str:
    """How error messages name the rows' source: the file, the pattern and its file count, or the Hub split."""
    if source.kind == "hub":
        return source.spec if source.hub_data_files else f"{source.spec}[{source.hub_split}]"
    return str(source.files[0]) if len(source.files) == 1 else f"{source.spec} ({len(source.files)} files)"


def _fingerprint(recipe: Recipe, tokenizer: PreTrainedTokenizerBase, source: DocumentSource) -> str:
    data = recipe.data
    files = [(str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in source.files]
    key = {
        "layout": _SFT_LAYOUT_VERSION,
        "template": CHAT_TEMPLATE,
        "source": data.source,
        "files": files,
        "hub": [data.hub_config, data.hub_split, data.hub_revision, data.hub_data_files],
        "fields": [data.text_field, data.sft_prompt_field, data.sft_response_field],
        "sft_format": data.sft_format,
        "untrainable": data.sft_untrainable,
        "max_rows": effective_max_documents(recipe),
        "block_size": data.block_size,
        "packing": bool(data.packing),
        "val": [data.val_fraction, recipe.run.seed],
        "tokenizer": [vocab_fingerprint(tokenizer), tokenizer.eos_token],
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]

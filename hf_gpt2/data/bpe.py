"""A new BPE trained on the recipe's training documents (``tokenizer.train_new: true``), cached by fingerprint.

The new tokenizer keeps the whole pipeline of ``tokenizer.name`` (for ``gpt2``: byte-level pre-tokenization with
GPT-2's regex, the byte-level decoder and ``<|endoftext|>`` as EOS) and learns new merges with the ``tokenizers``
trainer (``train_new_from_iterator``), the way the Hugging Face course trains a tokenizer "from an old one". It sees
only the training split: the validation documents (the same document-level split prepare makes) are left out, so the
validation loss is measured on text the tokenizer never saw.

Layout under ``data.cache_dir/tokenizers/<source>-bpe<vocab>-<hash>/``: the tokenizer's ``save_pretrained`` files
plus ``train_meta.json`` (what it was trained on, how long it took). The folder is written under a temporary name and
renamed, so a crash never leaves a half-written tokenizer; later runs, ``hf-gpt2 prepare`` and streaming reuse it.
Training is deterministic, so nodes without a shared filesystem that each train it get the same tokenizer (the
training loop checks that every process holds the same vocabulary).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hf_gpt2.data.sources import DocumentSource, iter_documents, resolve_source
from hf_gpt2.errors import DataError
from hf_gpt2.folders import replace_folder

logger = logging.getLogger(__name__)

LAYOUT_VERSION = 1
TRAIN_META = "train_meta.json"
BATCH_DOCUMENTS = 1000
"""Documents handed to the trainer at a time."""
_REPORTED: set[Path] = set()
"""Cached tokenizer folders this process has already named in the log."""


def trained_vocab_size(recipe: Any) -> int:
    """The vocabulary size asked of a new BPE: ``tokenizer.vocab_size``, or ``model.vocab_size`` when unset."""
    return recipe.tokenizer.vocab_size or recipe.model.vocab_size


def trained_tokenizer_dir(recipe: Any, *, force: bool = False) -> Path:
    """Return the folder of the recipe's new BPE, training it first unless a complete one is cached.

    Run it on the main process first (``accelerator.main_process_first()``); concurrent callers are safe (the first
    to finish wins and the others use its folder).

    Raises:
        DataError: the source is missing or empty, the base tokenizer cannot be loaded or has no EOS token.
    """
    from hf_gpt2.recipe import effective_max_documents

    data, tok = recipe.data, recipe.tokenizer
    source = resolve_source(data)
    settings = {
        "layout": LAYOUT_VERSION,
        "base": _base_description(tok.name),
        "source": source.describe(),
        "val_fraction": data.val_fraction,
        "max_documents": effective_max_documents(recipe),
        "train_documents": tok.train_documents,
        "vocab_size": trained_vocab_size(recipe),
    }
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
    name = f"{source.short_name()}-bpe{settings['vocab_size']}-{digest}"
    directory = Path(data.cache_dir).expanduser() / "tokenizers" / name
    if not force and _is_complete(directory):
        if directory not in _REPORTED:
            logger.info("reusing the trained tokenizer %s", directory)
            _REPORTED.add(directory)
        return directory
    return _train(directory, source, settings, recipe)


def load_trained_meta(directory: Path) -> dict[str, Any]:
    """The ``train_meta.json`` of a trained tokenizer folder."""
    return json.loads((directory / TRAIN_META).read_text(encoding="utf-8"))


def train_documents(
    source: DocumentSource, val_fraction: float, max_documents: int | None, limit: int | None
) -> Iterator[list[str]]:
    """Yield the source's training documents (those prepare does not put in val) in batches, at most ``limit``."""
    from hf_gpt2.data.prepare import val_mask

    documents = iter_documents(source, max_documents)
    start = taken = 0
    while limit is None or taken < limit:
        chunk = list(itertools.islice(documents, BATCH_DOCUMENTS))
        if not chunk:
            return
        is_val = val_mask(start, len(chunk), val_fraction)
        start += len(chunk)
        batch = [doc for doc, val in zip(chunk, is_val.tolist(), strict=True) if not val]
        if limit is not None:
            batch = batch[: limit - taken]
        taken += len(batch)
        if batch:
            yield batch


def _base_description(name: str) -> dict[str, Any]:
    if name == "gpt2":
        from hf_gpt2.tokenization import ENCODER_JSON_SHA256, VOCAB_BPE_SHA256

        return {"name": "gpt2", "encoder_json": ENCODER_JSON_SHA256, "vocab_bpe": VOCAB_BPE_SHA256}
    return {"name": name}


def _load_base(name: str, model_max_length: int) -> Any:
    if name == "gpt2":
        from hf_gpt2.tokenization import load_gpt2_tokenizer

        return load_gpt2_tokenizer(model_max_length=model_max_length)
    from hf_gpt2.data.prepare import load_hf_tokenizer

    base = load_hf_tokenizer(name)
    if not hasattr(base, "train_new_from_iterator"):
        raise DataError(
            f"tokenizer.name={name!r} ({type(base).__name__}) cannot train a new vocabulary; tokenizer.train_new "
            "needs a tokenizer backed by the tokenizers library (e.g. 'gpt2')"
        )
    return base


def _is_complete(directory: Path) -> bool:
    try:
        meta = load_trained_meta(directory)
    except (OSError, ValueError):
        return False
    return all((directory / name).is_file() for name in meta.get("files", ["tokenizer.json"]))


def _train(directory: Path, source: DocumentSource, settings: dict[str, Any], recipe: Any) -> Path:
    """Train the BPE on the training documents, save it under a temporary name, then rename it into place."""
    from tqdm.auto import tqdm

    data, tok = recipe.data, recipe.tokenizer
    base = _load_base(tok.name, recipe.model.n_positions)
    if base.eos_token_id is None:
        raise DataError(f"tokenizer.name={tok.name!r} has no EOS token; prepare appends EOS after every document")
    vocab_size = settings["vocab_size"]
    logger.info("training a %s-token BPE like %s on the training documents of %s → %s", f"{vocab_size:,}",
                tok.name, data.source, directory)  # fmt: skip
    started = time.perf_counter()
    counts = {"documents": 0, "characters": 0}
    bar = tqdm(unit="doc", desc="training the tokenizer", mininterval=1.0, dynamic_ncols=True)

    def batches() -> Iterator[list[str]]:
        for batch in train_documents(source, data.val_fraction, settings["max_documents"], tok.train_documents):
            counts["documents"] += len(batch)
            counts["characters"] += sum(len(doc) for doc in batch)
            bar.update(len(batch))
            yield batch

    try:
        tokenizer = base.train_new_from_iterator(batches(), vocab_size=vocab_size, show_progress=False)
    finally:
        bar.close()
    seconds = time.perf_counter() - started
    if counts["documents"] == 0:
        raise DataError(
            f"data.source={data.source!r} has no training documents to train a tokenizer on; point data.source at "
            "files with text"
        )
    if len(tokenizer) < vocab_size:
        logger.warning("the tokenizer has %d tokens, not tokenizer.vocab_size=%d: %s characters of training text "
                       "allow no more merges", len(tokenizer), vocab_size, f"{counts['characters']:,}")  # fmt: skip
    return _publish(directory, tokenizer, settings, counts, seconds)


def _publish(
    directory: Path, tokenizer: Any, settings: dict[str, Any], counts: dict[str, int], seconds: float
) -> Path:
    import tokenizers

    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = directory.parent / f".tmp-{directory.name}-{uuid.uuid4().hex[:6]}"
    try:
        files = [Path(path).name for path in tokenizer.save_pretrained(str(staging))]
        meta = {
            **settings,
            "files": sorted(set(files)),
            "num_tokens": len(tokenizer),
            "eos_id": tokenizer.eos_token_id,
            "trained_on": counts,
            "seconds": round(seconds, 3),
            "tokenizers_version": tokenizers.__version__,
        }
        (staging / TRAIN_META).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if not replace_folder(staging, directory) and not _is_complete(directory):
        raise DataError(f"another process left an incomplete {directory} while this one trained it; run again")
    _REPORTED.add(directory)
    logger.info("trained a %d-token tokenizer on %s documents in %.1f s: %s", len(tokenizer),
                f"{counts['documents']:,}", seconds, directory)  # fmt: skip
    return directory

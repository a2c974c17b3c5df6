"""Validation bits per byte: the byte table of a tokenizer, the sums over validation windows, the whole val split."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hf_gpt2.data.loader import TokenWindowLoader
from hf_gpt2.data.prepare import prepare_token_shards
from hf_gpt2.errors import DataError
from hf_gpt2.recipe import recipe_from_dict
from hf_gpt2.tokenization import load_tokenizer, token_byte_lengths
from hf_gpt2.training.components import to_model_batch
from hf_gpt2.training.validation import ValScores, score_batches, token_nats

TEXTS = ["Héllo wörld 🤗 naïve — “quotes” <|endoftext|> tabs\tand\nnewlines", "  leading spaces", "日本語のテキスト"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """30 pydoc topics and a few texts with multi-byte characters, as jsonl."""
    from pydoc_data.topics import topics

    path = tmp_path_factory.mktemp("bpb") / "docs.jsonl"
    texts = sorted(topics.values())[:30] + TEXTS
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
    return path


def make_recipe(corpus: Path, cache: Path, *overrides: str):
    raw = {
        "model": {"n_layer": 1, "n_head": 2, "n_embd": 16, "n_positions": 32},
        "data": {"source": str(corpus), "cache_dir": str(cache), "block_size": 16, "val_fraction": 0.2, "num_proc": 1},
        "train": {"max_steps": 1, "micro_batch_size": 3},
        "sample": {"prompts": []},  # a 32-position model has no room for the default samples
    }
    return recipe_from_dict(raw, list(overrides))


@pytest.mark.parametrize("new_bpe", [False, True], ids=["gpt2", "new-bpe"])
def test_the_byte_table_sums_to_the_utf8_bytes_of_any_text(corpus, tmp_path, gpt2_tokenizer, new_bpe):
    extra = ["tokenizer.train_new=true", "model.vocab_size=400"] if new_bpe else []
    tokenizer = load_tokenizer(make_recipe(corpus, tmp_path, *extra)) if new_bpe else gpt2_tokenizer
    lengths = token_byte_lengths(tokenizer)
    assert len(lengths) == len(tokenizer) and lengths[tokenizer.eos_token_id] == 0  # EOS is no text
    from pydoc_data.topics import topics

    for text in [*TEXTS, *sorted(topics.values())[:20]]:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        special = sum(lengths[i] == 0 for i in ids)
        assert sum(lengths[i] for i in ids) == len(text.encode("utf-8")) - special * len(b"<|endoftext|>")


def test_a_tokenizer_that_is_not_byte_level_is_refused_by_name():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.WordLevel({"hello": 0, "[UNK]": 1}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    with pytest.raises(DataError, match="not a byte-level BPE"):
        token_byte_lengths(PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]"))


def test_the_scores_are_exact_sums_over_the_scored_targets():
    torch.manual_seed(0)
    vocab = 11
    lengths = torch.tensor([0, 1, 2, 3, 1, 1, 4, 1, 2, 1, 1])  # id 0: a special token
    targets = torch.randint(0, vocab, (5, 7))
    targets[0, :3] = 0
    targets[1, 4:] = -100  # unscored (SFT prompts)
    logits = torch.randn(5, 7, vocab)

    class Fixed(torch.nn.Module):
        def forward(self, input_ids, use_cache=False):
            rows = slice(int(input_ids[0, 0]), int(input_ids[-1, 0]) + 1)
            return type("Out", (), {"logits": logits[rows]})

    batch = {"input_ids": torch.arange(5).unsqueeze(1).expand(5, 7), "targets": targets}
    sums = score_batches(Fixed(), [batch], lengths, rows_per_forward=2)
    scores = ValScores.from_sums(sums)
    nats = F.cross_entropy(logits.reshape(-1, vocab), targets.reshape(-1), reduction="none", ignore_index=-100)
    scored = targets.reshape(-1) != -100
    text = scored & (lengths[targets.reshape(-1).clamp(min=0)] > 0)
    assert scores.tokens == int(scored.sum())
    assert scores.loss == pytest.approx(float(nats[scored].mean()), rel=1e-6)
    n_bytes = int(lengths[targets.reshape(-1)[text]].sum())
    assert scores.bytes == n_bytes
    assert scores.bits_per_byte == pytest.approx(float(nats[text].sum()) / (math.log(2) * n_bytes), rel=1e-6)
    torch.testing.assert_close(token_nats(logits, targets, chunk_rows=4), nats)


def test_without_a_byte_table_there_are_no_bits_per_byte():
    logits = torch.zeros(1, 3, 5)

    class Uniform(torch.nn.Module):
        def forward(self, input_ids, use_cache=False):
            return type("Out", (), {"logits": logits})

    batch = {"input_ids": torch.zeros(1, 3, dtype=torch.long), "targets": torch.tensor([[1, 2, 3]])}
    scores = ValScores.from_sums(score_batches(Uniform(), [batch], None, rows_per_forward=1))
    assert scores.bits_per_byte is None and scores.loss == pytest.approx(math.log(5))


@pytest.mark.parametrize("num_processes", [1, 2, 3])
def test_the_tiled_batches_cover_every_window_of_the_split_once(corpus, tmp_path, num_processes):
    recipe = make_recipe(corpus, tmp_path)
    prepared = prepare_token_shards(recipe)
    tokens = prepared.read_tokens("val").astype(np.int64)
    T, B = 16, 3
    windows = []
    for rank in range(num_processes):
        loader = TokenWindowLoader(prepared, "val", T, B, seed=1, process_index=rank, num_processes=num_processes)
        windows += [w for batch in loader.tiled_batches() for w in batch.numpy()]
    n = (len(tokens) - 1) // T
    assert len(windows) == n and n > B * num_processes
    got = sorted(tuple(w) for w in windows)
    want = sorted(tuple(tokens[k * T : k * T + T + 1]) for k in range(n))
    assert got == want
    batch = to_model_batch(next(TokenWindowLoader(prepared, "val", T, B, seed=1).tiled_batches()), torch.device("cpu"))
    assert torch.equal(batch["targets"][0], torch.from_numpy(tokens[1 : T + 1]))

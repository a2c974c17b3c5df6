"""Packing: per-sample losses of packed rows equal unpacked ones; the loader resumes exactly and splits processes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hf_gpt2.data.sft import (
    IGNORE_INDEX,
    PreparedSFT,
    SFTExample,
    SFTLoader,
    pack_examples,
    pad_examples,
)
from hf_gpt2.data.sft.prepare import _write_split


def random_examples(lengths, vocab=96, seed=0):
    rng = np.random.default_rng(seed)
    examples = []
    for n in lengths:
        ids = rng.integers(1, vocab, n)
        labels = np.where(np.arange(n) >= n // 2, ids, IGNORE_INDEX)  # the second half is the "response"
        examples.append((ids, labels))
    return examples


def token_losses(model, batch):
    """Per-token cross-entropy aligned with the labels (position t holds the loss of predicting labels[t])."""
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    logits = model(**inputs, use_cache=False).logits[:, :-1]  # (B, T-1, V)
    targets = batch["labels"][:, 1:]
    loss = F.cross_entropy(logits.transpose(1, 2), targets, ignore_index=IGNORE_INDEX, reduction="none")
    return F.pad(loss, (1, 0)), F.pad(targets != IGNORE_INDEX, (1, 0))


@pytest.mark.parametrize("implementation", ["sdpa", "eager"])
def test_packed_per_sample_losses_equal_unpacked(tiny_model, implementation):
    tiny_model.set_attn_implementation(implementation)
    examples = random_examples([7, 12, 3, 9])
    row = {k: v[None] for k, v in pack_examples(examples, 40, pad_id=0).items()}
    assert row["position_ids"][0].tolist() == [*range(7), *range(12), *range(3), *range(9), *range(9)]
    packed_loss, _ = token_losses(tiny_model, row)
    start = 0
    for ids, labels in examples:
        alone = {"input_ids": torch.as_tensor(ids)[None], "labels": torch.as_tensor(labels)[None]}
        loss, trained = token_losses(tiny_model, alone)
        packed = packed_loss[0, start : start + len(ids)]
        torch.testing.assert_close(packed[trained[0]], loss[0][trained[0]], atol=1e-5, rtol=1e-5)
        assert packed[~trained[0]].abs().max() == 0  # nothing leaks across the boundary into the next sample
        start += len(ids)
    assert row["labels"][0, start:].eq(IGNORE_INDEX).all()


def test_padded_batch_losses_equal_unpadded(tiny_model):
    examples = random_examples([5, 11])
    batch = pad_examples(examples, pad_id=0)
    assert batch["attention_mask"].sum(1).tolist() == [5, 11]
    losses, trained = token_losses(tiny_model, batch)
    alone, alone_trained = token_losses(tiny_model, {"input_ids": torch.as_tensor(examples[0][0])[None],
                                                     "labels": torch.as_tensor(examples[0][1])[None]})  # fmt: skip
    torch.testing.assert_close(losses[0, :5][trained[0, :5]], alone[0][alone_trained[0]], atol=1e-5, rtol=1e-5)


def make_prepared(tmp_path, lengths, packing):
    examples = [SFTExample(ids.tolist(), labels.tolist()) for ids, labels in random_examples(lengths)]
    meta = {"splits": {"train": _write_split(tmp_path, "train", examples, 96)}, "packing": packing, "pad_id": 0}
    return PreparedSFT(tmp_path, meta, reused=False)


@pytest.mark.parametrize("packing", [True, False])
def test_loader_resumes_exactly_and_walks_epochs(tmp_path, packing):
    prepared = make_prepared(tmp_path, list(np.random.default_rng(1).integers(4, 20, 23)), packing)
    loader = SFTLoader(prepared, "train", 32, 2, seed=5)
    for _ in range(7):
        next(loader)
    state = loader.state_dict()
    expected = [next(loader) for _ in range(9)]  # crosses into later epochs
    assert loader.epoch >= 1
    resumed = SFTLoader(prepared, "train", 32, 2, seed=5)
    resumed.load_state_dict(state)
    for want, got in zip(expected, [next(resumed) for _ in range(9)], strict=True):
        assert want.keys() == got.keys()
        for key in want:
            assert torch.equal(want[key], got[key])
    if packing:
        assert set(expected[0]) == {"input_ids", "labels", "position_ids"} and expected[0]["input_ids"].shape == (
            2,
            32,
        )
    else:
        assert set(expected[0]) == {"input_ids", "labels", "attention_mask"}


def test_processes_take_disjoint_rows_of_the_same_sequence(tmp_path):
    prepared = make_prepared(tmp_path, [6] * 12, packing=True)  # 5 samples of 6 tokens per 32-token row
    single = SFTLoader(prepared, "train", 32, 2, seed=0)
    ranks = [SFTLoader(prepared, "train", 32, 1, seed=0, process_index=i, num_processes=2) for i in range(2)]
    both = next(single)
    for i, loader in enumerate(ranks):
        assert torch.equal(next(loader)["input_ids"][0], both["input_ids"][i])
    assert ranks[0].state_dict() == ranks[1].state_dict() == single.state_dict()

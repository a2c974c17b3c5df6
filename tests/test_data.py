"""Data preparation and loading: exact token counts with EOS after every document, fingerprint reuse, sources,
clear errors, and a loader whose order is seed-fixed, resumable and split across processes."""

from __future__ import annotations

import json
import re
from pydoc_data.topics import topics

import numpy as np
import pytest

from hf_gpt2.cli import main as cli_main
from hf_gpt2.data import prepare as prepare_module
from hf_gpt2.data.loader import TokenWindowLoader
from hf_gpt2.data.prepare import prepare_token_shards
from hf_gpt2.data.sources import iter_documents, kjv_documents, resolve_source
from hf_gpt2.data.split import val_mask
from hf_gpt2.errors import DataError
from hf_gpt2.recipe import recipe_from_dict
from hf_gpt2.tokenization import GPT2_EOS_ID, load_gpt2_tiktoken

NAMES = sorted(topics)[:30]
TRAIN = {"max_steps": 1, "micro_batch_size": 2}


def make_recipe(source, cache_dir, *overrides):
    return recipe_from_dict(
        {"train": TRAIN, "data": {"source": str(source), "cache_dir": str(cache_dir), "num_proc": 1}},
        ["data.val_fraction=0.1", "data.block_size=64", *overrides],
    )


@pytest.fixture(scope="module")
def text_dir(tmp_path_factory):
    """30 pydoc topics, one .txt file (= one document) each; one empty file that must be skipped."""
    folder = tmp_path_factory.mktemp("topics")
    for i, name in enumerate(NAMES):
        (folder / f"{i:03d}_{name}.txt").write_text(topics[name], encoding="utf-8")
    (folder / "999_empty.txt").write_text("", encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def prepared(text_dir, tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    return prepare_token_shards(make_recipe(text_dir, cache, "data.shard_tokens=5000"))


def expected_split(texts, val_fraction=0.1):
    """Token ids of each split as prepare must write them: tokens(doc) + [EOS], documents in order."""
    encode = load_gpt2_tiktoken().encode_ordinary
    is_val = val_mask(0, len(texts), val_fraction)
    out = {"train": [], "val": []}
    for text, val in zip(texts, is_val, strict=True):
        out["val" if val else "train"] += encode(text) + [GPT2_EOS_ID]
    return {k: np.array(v, dtype=np.int64) for k, v in out.items()}


def test_shards_hold_every_document_with_eos_in_order(prepared):
    expected = expected_split([topics[n] for n in NAMES])
    meta = prepared.meta
    assert meta["dtype"] == "uint16" and meta["eos_id"] == GPT2_EOS_ID and meta["vocab_size"] == 50257
    assert meta["tokenizer"] == "gpt2"
    for split in ("train", "val"):
        tokens = prepared.read_tokens(split).astype(np.int64)
        np.testing.assert_array_equal(tokens, expected[split])
        assert meta["splits"][split]["num_tokens"] == len(expected[split])
        assert tokens[-1] == GPT2_EOS_ID
        assert (tokens == GPT2_EOS_ID).sum() == meta["splits"][split]["num_documents"]
    encode = load_gpt2_tiktoken().encode_ordinary
    total = sum(len(encode(topics[n])) + 1 for n in NAMES)
    assert sum(s["num_tokens"] for s in meta["splits"].values()) == total
    assert meta["splits"]["val"]["num_documents"] == 3  # 10% of 30, evenly spaced; the empty file is skipped
    assert len(meta["splits"]["train"]["shards"]) > 1  # shard_tokens=5000 split the train tokens
    for split in ("train", "val"):  # raw little-endian uint16 files
        raw = b"".join(p.read_bytes() for p in prepared.shard_paths(split))
        assert len(raw) == 2 * meta["splits"][split]["num_tokens"]
        np.testing.assert_array_equal(np.frombuffer(raw, dtype="<u2"), expected[split])


def test_second_prepare_reuses_without_tokenizing(prepared, text_dir, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("re-tokenized although the cache was valid")

    monkeypatch.setattr(prepare_module, "_tokenize", refuse)
    again = prepare_token_shards(make_recipe(text_dir, prepared.directory.parent, "data.shard_tokens=5000"))
    assert again.reused and again.directory == prepared.directory and again.meta == prepared.meta


def test_fingerprint_follows_split_source_and_limit(prepared, text_dir):
    cache = prepared.directory.parent
    for override in ("data.val_fraction=0.2", "data.max_documents=10"):
        other = prepare_token_shards(make_recipe(text_dir, cache, override))
        assert not other.reused and other.directory != prepared.directory
    limited = prepare_token_shards(make_recipe(text_dir, cache, "data.max_documents=10"))
    assert limited.reused and sum(s["num_documents"] for s in limited.meta["splits"].values()) == 10


def test_force_and_parallel_give_the_same_shards(prepared, text_dir, monkeypatch, tmp_path):
    monkeypatch.setattr(prepare_module, "CHUNK_CHARS", 20_000)  # many chunks, so two workers share the work
    rebuilt = prepare_token_shards(make_recipe(text_dir, tmp_path, "data.num_proc=2"), force=True)
    assert not rebuilt.reused
    for split in ("train", "val"):
        np.testing.assert_array_equal(rebuilt.read_tokens(split), prepared.read_tokens(split))
    again = prepare_token_shards(make_recipe(text_dir, tmp_path, "data.num_proc=2"), force=True)
    assert not again.reused and not list(tmp_path.glob(".tmp-*")) and not list(tmp_path.glob(".old-*"))


def test_row_sources_one_document_per_row(tmp_path):
    rows = [{"text": topics[n], "id": i} for i, n in enumerate(NAMES[:12])]
    (tmp_path / "a.jsonl").write_text("\n".join(json.dumps(r) for r in rows[:6]) + "\n")
    (tmp_path / "b.json").write_text(json.dumps(rows[6:9]))
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"body": [r["text"] for r in rows[9:]]}), tmp_path / "c.parquet")
    source = resolve_source(make_recipe(tmp_path / "*.json*", tmp_path).data)
    assert list(iter_documents(source)) == [r["text"] for r in rows[:9]]
    parquet = resolve_source(make_recipe(tmp_path / "c.parquet", tmp_path, "data.text_field=body").data)
    assert list(iter_documents(parquet)) == [r["text"] for r in rows[9:]]
    with pytest.raises(DataError, match=r"no column data.text_field='text'.*'body'"):
        list(iter_documents(resolve_source(make_recipe(tmp_path / "c.parquet", tmp_path).data)))
    with pytest.raises(DataError, match=r"a.jsonl, line 1 has no field data.text_field='content'"):
        list(
            iter_documents(resolve_source(make_recipe(tmp_path / "a.jsonl", tmp_path, "data.text_field=content").data))
        )


def test_kjv_is_one_document_per_chapter_without_verse_markers():
    docs = kjv_documents()
    first = next(docs)
    assert first.startswith("Genesis 1\n\nIn the beginning God created")
    assert not re.search(r"\d+:\d+", first)
    assert first.count("\n") == 30  # title, blank line, 31 verses in 29 passages (1:14-15, 1:17-18 are joined)
    assert sum(1 for _ in docs) == 1188


def test_dev_mode_reads_a_small_slice(tmp_path):
    recipe = recipe_from_dict(
        {"train": TRAIN}, [f"data.cache_dir={tmp_path}", "run.dev=true", "data.max_documents=4", "data.block_size=64"]
    )
    result = prepare_token_shards(recipe)
    assert sum(s["num_documents"] for s in result.meta["splits"].values()) == 4
    assert result.meta["source"]["kind"] == "kjv"


def test_missing_and_empty_data_are_clear_errors(tmp_path):
    with pytest.raises(DataError, match=r"matches no file"):
        prepare_token_shards(make_recipe(tmp_path / "nope" / "*.txt", tmp_path))
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(DataError, match=r"holds no text"):
        prepare_token_shards(make_recipe(tmp_path / "empty.txt", tmp_path))
    (tmp_path / "x.txt").write_text("x")
    with pytest.raises(DataError, match=r"a single document too short to split into train and val; add text"):
        prepare_token_shards(make_recipe(tmp_path / "x.txt", tmp_path))
    (tmp_path / "x.csv").write_text("a,b")
    with pytest.raises(DataError, match=r"unsupported file types"):
        prepare_token_shards(make_recipe(tmp_path / "x.csv", tmp_path))
    assert not [p for p in tmp_path.iterdir() if p.is_dir()]  # nothing half-written was left behind
    (tmp_path / "one.txt").write_text("only one document")  # cut in two for val, but too small for a window
    with pytest.raises(DataError, match=r"the train split .* has 5 tokens, fewer than 2 × data.block_size = 128"):
        prepare_token_shards(make_recipe(tmp_path / "one.txt", tmp_path / "cache"))


def test_prepare_command(text_dir, tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        f"train: {{max_steps: 1, micro_batch_size: 1}}\ndata: {{source: '{text_dir}', num_proc: 1, block_size: 64}}\n"
    )
    assert cli_main(["prepare", str(recipe), f"data.cache_dir={tmp_path / 'c'}"]) == 0
    assert "prepared" in capsys.readouterr().out
    assert cli_main(["prepare", str(recipe), f"data.cache_dir={tmp_path / 'c'}"]) == 0
    assert "reused" in capsys.readouterr().out
    assert cli_main(["prepare", str(recipe), "data.source=/does/not/exist.txt"]) == 2
    assert "matches no file" in capsys.readouterr().err


# -- loader ----------------------------------------------------------------------------------------------------------


def take(loader, n):
    return [next(loader) for _ in range(n)]


def test_batches_are_windows_of_the_split(prepared):
    tokens = prepared.read_tokens("train").astype(np.int64)
    loader = TokenWindowLoader(prepared, "train", block_size=16, micro_batch_size=4, seed=0)
    batch = next(loader)
    assert batch.shape == (4, 17) and str(batch.dtype) == "torch.int64"
    for row in batch.numpy():
        starts = np.flatnonzero(np.lib.stride_tricks.sliding_window_view(tokens, 17).__eq__(row).all(axis=1))
        assert starts.size >= 1  # each row is a contiguous slice of the train tokens (shard boundaries included)


def test_order_is_fixed_by_the_seed_and_one_epoch_covers_every_window(prepared):
    a = TokenWindowLoader(prepared, "train", 64, 4, seed=1)
    b = TokenWindowLoader(prepared, "train", 64, 4, seed=1)
    c = TokenWindowLoader(prepared, "train", 64, 4, seed=2)
    batches_a = take(a, 5)
    assert all((x == y).all() for x, y in zip(batches_a, take(b, 5), strict=True))
    assert not all((x == y).all() for x, y in zip(batches_a, take(c, 5), strict=True))
    one = TokenWindowLoader(prepared, "train", 64, 1, seed=3)
    rows = [tuple(next(one)[0].tolist()) for _ in range(one.num_windows)]
    assert len(set(rows)) == one.num_windows  # no window twice within an epoch


def test_resume_from_state_dict_continues_exactly(prepared):
    block, batch = 64, 8
    reference = TokenWindowLoader(prepared, "train", block, batch, seed=5)
    steps = reference.num_windows // batch + 3  # run past an epoch boundary
    expected = take(reference, steps)
    first = TokenWindowLoader(prepared, "train", block, batch, seed=5)
    take(first, 4)
    state = json.loads(json.dumps(first.state_dict()))  # survives a JSON round trip (checkpoint files)
    resumed = TokenWindowLoader(prepared, "train", block, batch, seed=5)
    resumed.load_state_dict(state)
    for want, got in zip(expected[4:], take(resumed, steps - 4), strict=True):
        assert (want == got).all()
    with pytest.raises(DataError, match="seed"):
        TokenWindowLoader(prepared, "train", block, batch, seed=6).load_state_dict(state)


def test_processes_read_disjoint_slices_of_the_same_global_batch(prepared):
    single = TokenWindowLoader(prepared, "train", 32, 6, seed=9)
    ranks = [TokenWindowLoader(prepared, "train", 32, 3, seed=9, process_index=p, num_processes=2) for p in (0, 1)]
    for _ in range(4):
        parts = [next(r) for r in ranks]
        joined = np.concatenate([p.numpy() for p in parts])
        np.testing.assert_array_equal(joined, next(single).numpy())
        assert not {tuple(r) for r in parts[0].tolist()} & {tuple(r) for r in parts[1].tolist()}
    assert ranks[0].state_dict() == ranks[1].state_dict()  # one position, the same on every process


def test_val_batches_are_fixed_and_keep_the_position(prepared):
    loader = TokenWindowLoader(prepared, "val", 32, 2, seed=0)
    next(loader)
    position = loader.state_dict()["position"]
    first = list(loader.val_batches(3))
    assert loader.state_dict()["position"] == position
    assert all((x == y).all() for x, y in zip(first, loader.val_batches(3), strict=True))


def test_split_too_small_for_a_window_is_a_clear_error(prepared, text_dir):
    with pytest.raises(DataError, match=r"val split .* fewer than the 2 × data.block_size"):
        TokenWindowLoader(prepared, "val", 100_000, 1, seed=0)
    big_block = make_recipe(text_dir, prepared.directory.parent, "data.shard_tokens=5000", "data.block_size=20000",
                            "model.n_positions=20000")  # fmt: skip
    with pytest.raises(DataError, match=r"the val split .* fewer than 2 × data.block_size = 40,000; raise data.val"):
        prepare_token_shards(big_block)  # found before training starts, also when the shards are reused


def test_hub_data_files_path_reads_parquet_and_streams_a_dev_slice(tmp_path):
    """The hub code path through `datasets`, offline: explicit data files (local here instead of hf://)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    texts = [topics[n] for n in NAMES[:8]]
    pq.write_table(pa.table({"text": texts, "n": list(range(8))}), tmp_path / "train.parquet")
    base = [f"data.hub_data_files=[{tmp_path / 'train.parquet'}]", "data.val_fraction=0.25"]
    full = prepare_token_shards(make_recipe("hub:local/topics", tmp_path / "c", *base))
    assert full.meta["source"]["kind"] == "hub"
    expected = expected_split(texts, 0.25)
    for split in ("train", "val"):
        np.testing.assert_array_equal(full.read_tokens(split), expected[split])
    dev = prepare_token_shards(make_recipe("hub:local/topics", tmp_path / "c", *base, "data.max_documents=4"))
    assert sum(s["num_documents"] for s in dev.meta["splits"].values()) == 4  # streamed, stopped after 4 rows
    with pytest.raises(DataError, match="no column data.text_field='body'"):
        prepare_token_shards(make_recipe("hub:local/topics", tmp_path / "c", *base, "data.text_field=body"))


# -- streaming ------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def parquet_source(tmp_path_factory):
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = tmp_path_factory.mktemp("stream")
    texts = [topics[n] for n in NAMES[:12]]
    pq.write_table(pa.table({"text": texts}), folder / "train.parquet", row_group_size=3)
    return folder, texts


def streaming_recipe(folder, *overrides):
    return make_recipe(
        "hub:local/topics",
        folder / "cache",
        f"data.hub_data_files=[{folder / 'train.parquet'}]",
        "data.streaming=true",
        "data.val_fraction=0.25",
        *overrides,
    )


def test_streaming_packs_the_same_tokens_as_prepare(parquet_source):
    from hf_gpt2.data.streaming import StreamingTokenLoader

    folder, texts = parquet_source
    expected = expected_split(texts, 0.25)["train"]
    T, B = 64, 3
    loader = StreamingTokenLoader(streaming_recipe(folder), "train", T, B)
    n = (len(expected) - 1) // (B * T)
    for step, batch in zip(range(n), loader, strict=False):
        for row in range(B):
            start = (step * B + row) * T
            np.testing.assert_array_equal(batch[row].numpy(), expected[start : start + T + 1])


def test_streaming_resumes_exactly_across_epochs(parquet_source):
    from hf_gpt2.data.streaming import StreamingTokenLoader

    folder, _ = parquet_source
    recipe = streaming_recipe(folder)
    reference = StreamingTokenLoader(recipe, "train", 256, 4)
    expected = take(reference, 40)  # several passes over the 9 train documents
    assert reference.epoch >= 2
    first = StreamingTokenLoader(recipe, "train", 256, 4)
    take(first, 13)
    state = json.loads(json.dumps(first.state_dict()))
    resumed = StreamingTokenLoader(recipe, "train", 256, 4)
    resumed.load_state_dict(state)
    for want, got in zip(expected[13:], take(resumed, 27), strict=True):
        assert (want == got).all()
    val = StreamingTokenLoader(recipe, "val", 64, 2)
    assert all((x == y).all() for x, y in zip(val.val_batches(2), val.val_batches(2), strict=True))


def test_streaming_processes_read_disjoint_documents(text_dir):
    from hf_gpt2.data.streaming import StreamingTokenLoader

    recipe = make_recipe(text_dir, text_dir, "data.streaming=true")
    ranks = [StreamingTokenLoader(recipe, "train", 32, 2, process_index=p, num_processes=2) for p in (0, 1)]
    rows = [{tuple(r) for _ in range(5) for r in next(loader).tolist()} for loader in ranks]
    assert not rows[0] & rows[1]


def test_prepare_command_also_prepares_sft_data(tmp_path, capsys):
    rows = [{"prompt": f"What is {i} + {i}?", "response": f"It is {2 * i}."} for i in range(10)]
    (tmp_path / "sft.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    recipe = tmp_path / "sft.yaml"
    recipe.write_text(
        "train: {max_steps: 1, micro_batch_size: 1}\n"
        f"data: {{format: sft, sft_format: prompt_completion, source: '{tmp_path / 'sft.jsonl'}', "
        f"cache_dir: '{tmp_path / 'c'}', val_fraction: 0.2, block_size: 64}}\n"
        "model: {n_positions: 64}\nsample: {max_new_tokens: 16}\n"
    )
    assert cli_main(["prepare", str(recipe)]) == 0
    out = capsys.readouterr().out
    assert "prepared" in out and "8 examples" in out


def test_a_changed_file_is_prepared_again(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    for i, name in enumerate(NAMES[:4]):
        (folder / f"{i}.txt").write_text(topics[name])
    first = prepare_token_shards(make_recipe(folder, tmp_path / "c"))
    (folder / "0.txt").write_text(topics[NAMES[5]])
    second = prepare_token_shards(make_recipe(folder, tmp_path / "c"))
    assert not second.reused and second.directory != first.directory


def test_an_hf_tokenizer_folder_gives_the_same_ids(tmp_path, text_dir, prepared):
    from hf_gpt2.tokenization import load_gpt2_tokenizer

    load_gpt2_tokenizer().save_pretrained(tmp_path / "tok")
    other = prepare_token_shards(make_recipe(text_dir, tmp_path / "c", f"tokenizer.name={tmp_path / 'tok'}"))
    assert other.meta["tokenizer"] == str(tmp_path / "tok") and other.meta["eos_id"] == GPT2_EOS_ID
    for split in ("train", "val"):
        np.testing.assert_array_equal(other.read_tokens(split), prepared.read_tokens(split))

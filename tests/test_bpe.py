"""``tokenizer.train_new``: a new BPE trained on the training split, cached, deterministic, and used by prepare."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from hf_gpt2.data.prepare import prepare_token_shards
from hf_gpt2.errors import DataError, RecipeError
from hf_gpt2.recipe import model_config_kwargs, recipe_from_dict
from hf_gpt2.tokenization import load_tokenizer, load_trained_meta, trained_tokenizer_dir
from hf_gpt2.training.components import build_model

VAL_WORD, TRAIN_WORD = "zyzzyva", "quokka"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """40 jsonl documents of pydoc English; document 0 (always val) repeats one word, a training document another."""
    from pydoc_data.topics import topics

    root = tmp_path_factory.mktemp("bpe")
    texts = sorted(topics.values())[:40]
    texts[0] = f"{texts[0]}\n" + f" {VAL_WORD}" * 400
    texts[1] = f"{texts[1]}\n" + f" {TRAIN_WORD}" * 400
    path = root / "docs.jsonl"
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
    return path


def make_recipe(corpus: Path, cache: Path, *overrides: str):
    raw = {
        "model": {"n_layer": 1, "n_head": 2, "n_embd": 16, "n_positions": 32, "vocab_size": 600},
        "tokenizer": {"train_new": True},
        "data": {"source": str(corpus), "cache_dir": str(cache), "block_size": 32, "val_fraction": 0.1, "num_proc": 1},
        "train": {"max_steps": 1, "micro_batch_size": 1},
        "sample": {"max_new_tokens": 8},  # the prompt and the new tokens fit in the 32 positions
    }
    return recipe_from_dict(raw, list(overrides))


@pytest.fixture(scope="module")
def trained(corpus, tmp_path_factory) -> tuple[object, Path]:
    recipe = make_recipe(corpus, tmp_path_factory.mktemp("cache"))
    return recipe, trained_tokenizer_dir(recipe)


def test_the_new_tokenizer_has_the_asked_size_gpt2s_pipeline_and_round_trips_any_text(trained):
    from transformers import AutoTokenizer

    recipe, folder = trained
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert len(tokenizer) == 600
    assert tokenizer.eos_token == "<|endoftext|>" and tokenizer.eos_token_id == 0
    assert tokenizer.model_max_length == recipe.model.n_positions
    text = "Unseen bytes still encode: naïve café, 東京, 🙂, tabs\tand  spaces.\n"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == text and max(ids) < 600
    meta = load_trained_meta(folder)
    assert meta["num_tokens"] == 600 and meta["eos_id"] == 0 and meta["base"]["name"] == "gpt2"


def test_only_the_training_split_is_learned(trained):
    """Document 0 is a validation document: its word must not become a token; a training document's word must."""
    from transformers import AutoTokenizer

    _, folder = trained
    vocab = AutoTokenizer.from_pretrained(folder).get_vocab()
    assert f"Ġ{TRAIN_WORD}" in vocab
    assert f"Ġ{VAL_WORD}" not in vocab
    assert load_trained_meta(folder)["trained_on"]["documents"] == 36  # 40 documents, 4 of them in val


def test_training_is_deterministic_and_the_cache_is_reused(trained, corpus, tmp_path, monkeypatch):
    recipe, folder = trained
    again = trained_tokenizer_dir(make_recipe(corpus, tmp_path))
    assert again != folder and again.name == folder.name  # same fingerprint, another cache
    assert (again / "tokenizer.json").read_bytes() == (folder / "tokenizer.json").read_bytes()

    from transformers import PreTrainedTokenizerBase

    def refuse(*args, **kwargs):
        raise AssertionError("a cached tokenizer was trained again")

    for cls in PreTrainedTokenizerBase.__subclasses__():
        monkeypatch.setattr(cls, "train_new_from_iterator", refuse, raising=False)
    assert trained_tokenizer_dir(recipe) == folder


def test_settings_that_change_the_tokenizer_change_its_folder(trained, corpus):
    recipe, folder = trained
    cache = recipe.data.cache_dir
    smaller = trained_tokenizer_dir(make_recipe(corpus, Path(cache), "tokenizer.vocab_size=400"))
    assert smaller != folder and load_trained_meta(smaller)["num_tokens"] == 400
    fewer = trained_tokenizer_dir(make_recipe(corpus, Path(cache), "tokenizer.train_documents=5"))
    assert fewer != folder and load_trained_meta(fewer)["trained_on"]["documents"] == 5


def test_a_half_written_folder_is_trained_again(corpus, tmp_path):
    recipe = make_recipe(corpus, tmp_path)
    folder = trained_tokenizer_dir(recipe)
    (folder / "tokenizer.json").unlink()
    assert trained_tokenizer_dir(recipe) == folder
    assert (folder / "tokenizer.json").is_file()
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]  # no temporary folders left


def test_prepare_writes_the_new_tokenizers_ids(trained):
    from transformers import AutoTokenizer

    recipe, folder = trained
    prepared = prepare_token_shards(recipe)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert prepared.meta["vocab_size"] == 600 and prepared.meta["eos_id"] == 0
    assert prepared.meta["tokenizer"] == str(folder)
    from hf_gpt2.data.sources import iter_documents, resolve_source

    documents = list(iter_documents(resolve_source(recipe.data)))
    val_ids = []
    for index in (0, 10, 20, 30):  # the evenly spaced validation documents of 40 at val_fraction 0.1
        val_ids += [*tokenizer(documents[index], add_special_tokens=False)["input_ids"], 0]
    assert np.array_equal(prepared.read_tokens("val"), np.array(val_ids))


def test_load_tokenizer_and_the_fresh_model_use_the_new_ids(trained):
    recipe, folder = trained
    tokenizer = load_tokenizer(recipe)
    assert len(tokenizer) == 600 and tokenizer.name_or_path == str(folder)
    assert model_config_kwargs(recipe, tokenizer)["eos_token_id"] == 0
    model = build_model(recipe, 600, tokenizer)
    assert model.config.eos_token_id == model.config.bos_token_id == 0 and model.config.vocab_size == 600


def test_an_eos_id_other_than_the_tokenizers_is_refused(trained):
    recipe, _ = trained
    tokenizer = load_tokenizer(recipe)
    with pytest.raises(RecipeError, match=r"model.eos_token_id=5 is not the tokenizer's EOS id 0"):
        build_model(make_recipe(Path(recipe.data.source), Path(recipe.data.cache_dir), "model.eos_token_id=5"),
                    600, tokenizer)  # fmt: skip


def test_a_source_without_training_documents_is_refused(tmp_path):
    source = tmp_path / "one.txt"
    source.write_text("x")  # one document of one character: val takes it whole (a longer one is cut in two)
    with pytest.raises(DataError, match="no training documents to train a tokenizer on"):
        trained_tokenizer_dir(make_recipe(source, tmp_path / "cache"))
    assert not (tmp_path / "cache" / "tokenizers").exists() or not any((tmp_path / "cache" / "tokenizers").iterdir())


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["tokenizer.vocab_size=100"], "tokenizer.vocab_size=100 is below 257"),
        (["tokenizer.vocab_size=700"], "tokenizer.vocab_size=700 exceeds model.vocab_size=600"),
        (["data.streaming=true"], "needs tokenizer.train_documents"),
        (["tokenizer.train_documents=0"], "tokenizer.train_documents must be >= 1"),
        (["model.init=gpt2"], "train_new needs model.init=scratch"),
        (["tokenizer.train_new=false", "tokenizer.vocab_size=300"], "only used with tokenizer.train_new=true"),
    ],
)
def test_recipe_checks(corpus, tmp_path, overrides, message):
    with pytest.raises(RecipeError, match=message):
        make_recipe(corpus, tmp_path, *overrides)


def test_the_kjv_corpus_trains_through_the_trainers_threads(tmp_path):
    """The built-in corpus reads SQLite inside a generator that the tokenizers trainer resumes from other threads."""
    recipe = recipe_from_dict(
        {
            "model": {"vocab_size": 512},
            "tokenizer": {"train_new": True, "train_documents": 30},
            "data": {"source": "kjv", "cache_dir": str(tmp_path)},
            "train": {"max_steps": 1, "micro_batch_size": 1},
        }
    )
    folder = trained_tokenizer_dir(recipe)
    assert load_trained_meta(folder)["trained_on"]["documents"] == 30


def test_every_process_must_hold_the_same_vocabulary(monkeypatch, gpt2_tokenizer, trained):
    from hf_gpt2.training import distributed as loop

    other = load_tokenizer(trained[0])
    accelerator = SimpleNamespace(num_processes=2)
    monkeypatch.setattr(loop, "gather_object", lambda items: [items[0], items[0]])
    loop.check_same_tokenizer(accelerator, gpt2_tokenizer)
    from hf_gpt2.tokenization import vocab_fingerprint

    monkeypatch.setattr(loop, "gather_object", lambda items: [vocab_fingerprint(other), items[0]])
    with pytest.raises(DataError, match=r"process\(es\) \[1\] loaded another vocabulary"):
        loop.check_same_tokenizer(accelerator, gpt2_tokenizer)

"""What a release folder holds, file by file, against what stock GPT-2 ships.

The reference is a stock ``GPT2LMHeadModel.save_pretrained`` + GPT-2 tokenizer folder of the same shape, plus the
files OpenAI's GPT-2 repos carry besides (``vocab.json``, ``merges.txt``, ``n_ctx``). A release must not override
what clients choose (generation settings), and must not lack what they read.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GPT2Config, GPT2LMHeadModel, GPT2Tokenizer

from hf_gpt2 import HfGPT2Config, HfGPT2ForCausalLM
from hf_gpt2.recipe import load_recipe
from hf_gpt2.release import save_release, save_stock_gpt2_export
from hf_gpt2.tokenization import gpt2_bpe_files, load_gpt2_tokenizer

ROOT = Path(__file__).resolve().parents[1]
SHAPE = {"n_positions": 128, "n_embd": 32, "n_layer": 2, "n_head": 4}
TEXT = "In the beginning God created the heaven and the earth. Héllo wörld 🤗"
SAMPLING_KEYS = {"do_sample", "max_new_tokens", "max_length", "temperature", "top_k", "top_p", "pad_token_id"}


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(scope="module")
def folders(tmp_path_factory, gpt2_tokenizer) -> dict[str, Path]:
    """``final`` and ``final-gpt2`` as a run writes them (quickstart recipe: sample.max_new_tokens=48, sampling on),
    from a model whose generation config still carries an older release's sampling settings; and ``stock``, what
    stock ``save_pretrained`` writes for the same weights."""
    root = tmp_path_factory.mktemp("releases")
    torch.manual_seed(0)
    model = HfGPT2ForCausalLM(HfGPT2Config(vocab_size=50257, **SHAPE)).eval()  # padded to 50304 rows (the default)
    model.generation_config.update(do_sample=True, max_new_tokens=48, temperature=0.8, top_k=200, pad_token_id=50256)
    save_release(model, gpt2_tokenizer, root / "final", load_recipe(ROOT / "recipes" / "quickstart.yaml"))
    save_stock_gpt2_export(model, gpt2_tokenizer, root / "final-gpt2")
    stock = GPT2LMHeadModel(GPT2Config(vocab_size=50257, **SHAPE))
    stock.save_pretrained(root / "stock")
    gpt2_tokenizer.save_pretrained(root / "stock")
    return {"final": root / "final", "final-gpt2": root / "final-gpt2", "stock": root / "stock"}


# ----------------------------------------------------------------------------------------------- generation


@pytest.mark.parametrize("release", ["final", "final-gpt2"])
def test_generation_config_is_stocks_with_no_sampling_settings(folders, release):
    written = _json(folders[release] / "generation_config.json")
    assert written == _json(folders["stock"] / "generation_config.json")
    assert not SAMPLING_KEYS & set(written)
    assert "max_new_tokens: 48" in (folders["final"] / "recipe.yaml").read_text()  # the samples still use it


def test_a_callers_max_length_and_greedy_default_hold_as_for_stock(folders, gpt2_tokenizer):
    ids = gpt2_tokenizer("In the beginning", return_tensors="pt").input_ids
    generated = {}
    for release in ("final", "final-gpt2"):
        model = AutoModelForCausalLM.from_pretrained(folders[release]).eval()
        generated[release] = model.generate(ids, attention_mask=torch.ones_like(ids), max_length=ids.shape[1] + 60)
    assert generated["final"].shape[1] == ids.shape[1] + 60  # not cut at the recipe's 48 new tokens
    assert torch.equal(generated["final"], generated["final-gpt2"])  # greedy, as stock decodes by default


# ----------------------------------------------------------------------------------------------- config


def test_stock_export_config_is_stocks_plus_n_ctx(folders):
    exported = _json(folders["final-gpt2"] / "config.json")
    assert exported.pop("n_ctx") == exported["n_positions"] == 128  # llama.cpp's converter reads n_ctx
    assert exported == _json(folders["stock"] / "config.json")
    assert "n_ctx" not in _json(folders["final"] / "config.json")  # hf_gpt2 reads n_positions only


@pytest.mark.parametrize("release", ["final", "final-gpt2"])
def test_release_holds_every_file_stock_gpt2_ships(folders, release):
    names = {p.name for p in folders[release].iterdir()}
    stock = {p.name for p in folders["stock"].iterdir()}
    assert stock | {"vocab.json", "merges.txt"} <= names
    assert not any(name.startswith(".") for name in names)  # no staging or probe file left behind


# ----------------------------------------------------------------------------------------------- tokenizer


@pytest.mark.parametrize("release", ["final", "final-gpt2"])
def test_vocab_files_are_openais_and_load_without_tokenizer_json(folders, release, gpt2_tokenizer, tmp_path):
    from tokenizers import ByteLevelBPETokenizer

    encoder, bpe = gpt2_bpe_files()
    folder = folders[release]
    assert (folder / "merges.txt").read_bytes() == bpe.read_bytes()
    assert _json(folder / "vocab.json") == _json(encoder)
    for name in ("vocab.json", "merges.txt"):  # a folder as older runtimes read it: vocabulary files only
        shutil.copy(folder / name, tmp_path / name)
    slow = GPT2Tokenizer.from_pretrained(tmp_path)
    text = TEXT + "<|endoftext|>"
    assert slow(text).input_ids == gpt2_tokenizer(text).input_ids
    plain = ByteLevelBPETokenizer.from_file(str(tmp_path / "vocab.json"), str(tmp_path / "merges.txt"))
    assert plain.encode(TEXT).ids == gpt2_tokenizer(TEXT).input_ids


@pytest.mark.parametrize("release", ["final", "final-gpt2"])
def test_tokenizer_pads_with_eos_and_knows_the_models_context(folders, release):
    tokenizer = AutoTokenizer.from_pretrained(folders[release])
    assert tokenizer.pad_token == tokenizer.eos_token == "<|endoftext|>" and tokenizer.pad_token_id == 50256
    assert tokenizer.model_max_length == 128  # the model's n_positions, not GPT-2's 1024
    batch = tokenizer(["Hello", "Hello world, again"], padding=True, return_tensors="pt")
    assert batch.input_ids.shape == (2, 4) and batch.attention_mask[0].tolist() == [1, 0, 0, 0]
    tokenizer_config = _json(folders[release] / "tokenizer_config.json")
    stock_config = _json(folders["stock"] / "tokenizer_config.json")
    assert {k: v for k, v in tokenizer_config.items() if k not in ("pad_token", "model_max_length")} == {
        k: v for k, v in stock_config.items() if k not in ("pad_token", "model_max_length")
    }


def test_the_callers_tokenizer_is_left_as_it_was(tmp_path):
    from hf_gpt2 import load_gpt2_tokenizer

    tokenizer = load_gpt2_tokenizer()
    torch.manual_seed(0)
    save_release(HfGPT2ForCausalLM(HfGPT2Config(vocab_size=50257, **SHAPE)), tokenizer, tmp_path / "final")
    assert tokenizer.pad_token is None and tokenizer.model_max_length == 1024
    assert AutoTokenizer.from_pretrained(tmp_path / "final").pad_token == "<|endoftext|>"


def test_a_new_bpe_gets_its_own_vocab_files(gpt2_tokenizer, tmp_path):
    import pydoc_data.topics

    texts = list(pydoc_data.topics.topics.values())[:50]
    trained = gpt2_tokenizer.train_new_from_iterator(texts, vocab_size=400, show_progress=False)
    torch.manual_seed(0)
    model = HfGPT2ForCausalLM(HfGPT2Config(vocab_size=len(trained), bos_token_id=0, eos_token_id=0, **SHAPE))
    save_release(model, trained, tmp_path / "final")
    vocab_only = tmp_path / "vocab-only"
    vocab_only.mkdir()
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(tmp_path / "final" / name, vocab_only / name)
    slow = GPT2Tokenizer.from_pretrained(vocab_only)
    assert len(slow) == len(trained) == 400
    assert slow(texts[0][:500]).input_ids == trained(texts[0][:500]).input_ids


# ----------------------------------------------------------------------------------------------- file modes


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_every_release_file_gets_the_mode_the_umask_gives(umask, gpt2_tokenizer, tmp_path):
    torch.manual_seed(0)
    model = HfGPT2ForCausalLM(HfGPT2Config(vocab_size=50257, **SHAPE))
    previous = os.umask(umask)
    try:
        save_release(model, gpt2_tokenizer, tmp_path / "final")
        save_stock_gpt2_export(model, gpt2_tokenizer, tmp_path / "final-gpt2")
    finally:
        os.umask(previous)
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert {"model.safetensors", "config.json", "vocab.json"} <= {p.name for p in files}
    assert {p.relative_to(tmp_path).as_posix(): _mode(p) for p in files} == {
        p.relative_to(tmp_path).as_posix(): 0o666 & ~umask for p in files
    }


def test_a_tokenizer_call_with_truncation_does_not_reach_the_release(tmp_path):
    tokenizer = load_gpt2_tokenizer()
    tokenizer.pad_token = tokenizer.eos_token
    tokenizer(["a few words", "more"], truncation=True, max_length=2, padding=True)  # sets the backend's state
    model = HfGPT2ForCausalLM(HfGPT2Config(vocab_size=50257, **SHAPE))
    save_release(model, tokenizer, tmp_path / "final")
    saved = json.loads((tmp_path / "final" / "tokenizer.json").read_text())
    assert saved["truncation"] is None and saved["padding"] is None
    assert tokenizer.backend_tokenizer.truncation is not None  # the caller's tokenizer is left as it was
    reloaded = AutoTokenizer.from_pretrained(tmp_path / "final")
    assert len(reloaded("one two three four five").input_ids) == 5


# ----------------------------------------------------------------------------------------------- the CLI


def test_convert_to_gpt2_writes_the_same_stock_export(folders, tmp_path):
    from hf_gpt2 import cli

    assert cli.main(["convert", "--to-gpt2", str(folders["final"]), str(tmp_path / "gpt2")]) == 0
    for name in ("config.json", "generation_config.json", "tokenizer_config.json", "vocab.json", "merges.txt"):
        assert (tmp_path / "gpt2" / name).read_bytes() == (folders["final-gpt2"] / name).read_bytes(), name
    assert _mode(tmp_path / "gpt2" / "model.safetensors") == _mode(tmp_path / "gpt2" / "config.json")

"""Conversion between stock transformers GPT-2 and hf_gpt2, in Python and through the CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from hf_gpt2 import HfGPT2ForCausalLM
from hf_gpt2.convert import from_gpt2, load_causal_lm, to_gpt2
from hf_gpt2.errors import CheckpointError, ConversionError


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hf_gpt2", *args], capture_output=True, text=True, timeout=300)


def test_round_trip_through_hf_gpt2_is_exact(tiny_stock_gpt2):
    back = to_gpt2(from_gpt2(tiny_stock_gpt2))
    for key, value in tiny_stock_gpt2.state_dict().items():
        if key in back.state_dict():
            assert torch.equal(back.state_dict()[key], value), key


def test_from_gpt2_reads_a_folder(tiny_stock_gpt2, tmp_path):
    tiny_stock_gpt2.save_pretrained(tmp_path / "stock")
    model = from_gpt2(tmp_path / "stock")
    x = torch.randint(0, 50257, (1, 10))
    with torch.no_grad():
        assert (model(x).logits - tiny_stock_gpt2(x).logits).abs().max() < 1e-4
    assert type(load_causal_lm(tmp_path / "stock")) is HfGPT2ForCausalLM


def test_shape_mismatch_names_the_tensor(tiny_stock_gpt2):
    state = tiny_stock_gpt2.state_dict()
    state["transformer.h.1.mlp.c_fc.weight"] = torch.zeros(32, 64)
    broken = GPT2LMHeadModel(tiny_stock_gpt2.config)
    broken.state_dict = lambda: state  # what a checkpoint with a wrong-size MLP would give
    with pytest.raises(ConversionError, match=r"'transformer\.h\.1\.mlp\.c_fc\.weight' has shape \(32, 64\)"):
        from_gpt2(broken)


def test_missing_tensor_names_the_tensor(tiny_stock_gpt2):
    state = dict(tiny_stock_gpt2.state_dict())
    del state["transformer.ln_f.bias"]
    broken = GPT2LMHeadModel(tiny_stock_gpt2.config)
    broken.state_dict = lambda: state
    with pytest.raises(ConversionError, match=r"no tensor 'transformer\.ln_f\.bias'"):
        from_gpt2(broken)


def test_unsupported_stock_options_are_refused():
    model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=64, reorder_and_upcast_attn=True))
    with pytest.raises(ConversionError, match="reorder_and_upcast_attn=True"):
        from_gpt2(model)


def test_missing_source_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        from_gpt2(tmp_path / "nowhere" / "model")


@pytest.mark.slow  # four `python -m hf_gpt2 convert` processes
def test_cli_round_trip_and_refusals(tiny_stock_gpt2, gpt2_tokenizer, tmp_path):
    stock_dir, ours_dir, back_dir = tmp_path / "stock", tmp_path / "ours", tmp_path / "back"
    tiny_stock_gpt2.save_pretrained(stock_dir)
    gpt2_tokenizer.save_pretrained(stock_dir)

    done = _cli("convert", "--from-gpt2", str(stock_dir), str(ours_dir))
    assert done.returncode == 0, done.stderr
    config = json.loads((ours_dir / "config.json").read_text())
    assert config["model_type"] == "hf_gpt2"
    assert config["auto_map"]["AutoModelForCausalLM"] == "modeling_hf_gpt2.HfGPT2ForCausalLM"
    assert (ours_dir / "tokenizer.json").is_file()

    done = _cli("convert", "--to-gpt2", str(ours_dir), str(back_dir))
    assert done.returncode == 0, done.stderr
    back = GPT2LMHeadModel.from_pretrained(back_dir)
    x = torch.randint(0, 50257, (2, 12))
    with torch.no_grad():
        assert (back(x).logits - tiny_stock_gpt2(x).logits).abs().max() < 1e-4

    before = sorted(p.name for p in back_dir.iterdir())
    done = _cli("convert", "--to-gpt2", str(ours_dir), str(back_dir))
    assert done.returncode == 2
    assert "already exists" in done.stderr and "Traceback" not in done.stderr
    assert sorted(p.name for p in back_dir.iterdir()) == before

    done = _cli("convert", "--from-gpt2", str(tmp_path / "missing" / "x"), str(tmp_path / "out"))
    assert done.returncode == 2
    assert "does not exist" in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


@pytest.mark.slow  # a `python -m hf_gpt2 convert` process
def test_cli_from_a_folder_without_tokenizer_writes_the_gpt2_bpe(tiny_stock_gpt2, tmp_path):
    tiny_stock_gpt2.save_pretrained(tmp_path / "stock")
    done = _cli("convert", "--from-gpt2", str(tmp_path / "stock"), str(tmp_path / "ours"))
    assert done.returncode == 0, done.stderr
    assert "using OpenAI's GPT-2 BPE" in done.stderr
    from transformers import AutoTokenizer

    assert AutoTokenizer.from_pretrained(tmp_path / "ours")("Hello world").input_ids == [15496, 995]


HEADS = [
    ("GPT2Model", "HfGPT2Model"),
    ("GPT2ForSequenceClassification", "HfGPT2ForSequenceClassification"),
    ("GPT2ForTokenClassification", "HfGPT2ForTokenClassification"),
    ("GPT2ForQuestionAnswering", "HfGPT2ForQuestionAnswering"),
]


def _stock_head(name: str):
    import transformers

    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=120, n_positions=32, n_embd=32, n_layer=2, n_head=4, num_labels=3, pad_token_id=0,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, classifier_dropout=0.0,
    )  # fmt: skip
    return getattr(transformers, name)(config).eval()


def _head_inputs(name: str) -> dict:
    g = torch.Generator().manual_seed(1)
    x = torch.randint(1, 120, (3, 10), generator=g)
    x[0, 7:] = 0  # right padding: the sequence head scores the last non-padding token
    inputs = {"input_ids": x, "token_type_ids": torch.randint(0, 2, (3, 10), generator=g)}
    if name == "GPT2ForSequenceClassification":
        inputs["labels"] = torch.tensor([0, 2, 1])
    elif name == "GPT2ForTokenClassification":
        inputs["labels"] = torch.randint(0, 3, (3, 10), generator=g)
    elif name == "GPT2ForQuestionAnswering":
        inputs["start_positions"], inputs["end_positions"] = torch.tensor([1, 2, 3]), torch.tensor([4, 5, 9])
    return inputs


@pytest.mark.parametrize(("stock_name", "ours_name"), HEADS)
def test_every_head_converts_both_ways_with_stock_outputs(stock_name, ours_name):
    stock = _stock_head(stock_name)
    ours = from_gpt2(stock)
    assert type(ours).__name__ == ours_name
    inputs = _head_inputs(stock_name)
    with torch.no_grad():
        ref, out = stock(**inputs), ours(**inputs)
    assert set(ref.keys()) == set(out.keys())
    for key in ref.keys():
        if key != "cache":
            torch.testing.assert_close(out[key], ref[key], rtol=1e-5, atol=1e-5, msg=key)
    back = to_gpt2(ours)
    assert type(back).__name__ == stock_name
    for key, value in stock.state_dict().items():
        assert torch.equal(back.state_dict()[key], value), key


@pytest.mark.parametrize(("stock_name", "ours_name"), HEADS)
def test_every_head_loads_through_its_auto_class_and_from_a_stock_folder(stock_name, ours_name, tmp_path):
    import transformers

    stock = _stock_head(stock_name)
    stock.save_pretrained(tmp_path / "stock")
    ours = from_gpt2(tmp_path / "stock")  # the folder's architecture picks the head
    assert type(ours).__name__ == ours_name
    ours.save_pretrained(tmp_path / "ours")
    auto = {
        "HfGPT2Model": "AutoModel",
        "HfGPT2ForSequenceClassification": "AutoModelForSequenceClassification",
        "HfGPT2ForTokenClassification": "AutoModelForTokenClassification",
        "HfGPT2ForQuestionAnswering": "AutoModelForQuestionAnswering",
    }[ours_name]
    loaded = getattr(transformers, auto).from_pretrained(tmp_path / "ours").eval()
    assert type(loaded).__name__ == ours_name
    inputs = {k: v for k, v in _head_inputs(stock_name).items() if k in ("input_ids", "token_type_ids")}
    with torch.no_grad():
        ref, out = stock(**inputs), loaded(**inputs)
    torch.testing.assert_close(out[0], ref[0], rtol=1e-5, atol=1e-5)


def test_a_stock_head_folder_still_loads_as_a_causal_lm(tmp_path):
    _stock_head("GPT2ForSequenceClassification").save_pretrained(tmp_path)
    assert type(load_causal_lm(tmp_path)) is HfGPT2ForCausalLM


def test_strip_vocab_padding_cuts_only_the_old_padded_size():
    from hf_gpt2.convert import strip_vocab_padding

    state = {"transformer.wte.weight": torch.ones(128, 4), "transformer.wpe.weight": torch.ones(128, 4)}
    stripped = strip_vocab_padding(state, vocab_size=90, pad_multiple=128)
    assert stripped["transformer.wte.weight"].shape == (90, 4) and stripped["transformer.wpe.weight"].shape == (128, 4)
    odd = {"transformer.wte.weight": torch.ones(99, 4)}  # not a padded size: load_state_dict reports the mismatch
    assert strip_vocab_padding(odd, vocab_size=90, pad_multiple=128)["transformer.wte.weight"].shape == (99, 4)

"""`hf-gpt2 generate`: streamed, seeded sampling from a model folder, and the --chat loop on piped input."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from hf_gpt2.generation import StopAwareStreamer, generate_text, strip_stop_strings


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory, gpt2_tokenizer):
    """A tiny random hf_gpt2 release with GPT-2's BPE (no chat template: --chat installs the default)."""
    from hf_gpt2 import HfGPT2Config, HfGPT2ForCausalLM

    torch.manual_seed(0)
    config = HfGPT2Config(vocab_size=50257, n_positions=64, n_embd=32, n_layer=2, n_head=4)
    folder = tmp_path_factory.mktemp("tiny_release")
    HfGPT2ForCausalLM(config).save_pretrained(folder)
    gpt2_tokenizer.save_pretrained(folder)
    return folder


def generate(folder, *args, stdin=None):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "hf_gpt2", "generate", "--model", str(folder), "--max-new-tokens", "12", *args]
    done = subprocess.run(command, input=stdin, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


ARGS = ("--prompt", "Hello, I am", "--temperature", "1.0", "--num-return-sequences", "2", "--device", "cpu")


@pytest.mark.slow
def test_generate_is_deterministic_with_a_seed(tiny_folder, capsys):
    from hf_gpt2.cli import main

    first = generate(tiny_folder, *ARGS, "--seed", "7")
    assert first.startswith("--- sample 1 ---\nHello, I am") and "--- sample 2 ---\nHello, I am" in first
    assert generate(tiny_folder, *ARGS, "--seed", "7") == first  # another process, the same text
    assert main(["generate", "--model", str(tiny_folder), "--max-new-tokens", "12", *ARGS, "--seed", "7"]) == 0
    assert capsys.readouterr().out == first
    main(["generate", "--model", str(tiny_folder), "--max-new-tokens", "12", *ARGS, "--seed", "8"])
    assert capsys.readouterr().out != first


def test_chat_answers_each_human_line(tiny_folder, capsys, monkeypatch):
    import io

    from hf_gpt2.cli import main

    monkeypatch.setattr(sys, "stdin", io.StringIO("Hi there\nAnd you?\n\n"))
    assert main(["generate", "--model", str(tiny_folder), "--chat", "--seed", "1", "--max-new-tokens", "8"]) == 0
    assert capsys.readouterr().out.count("Assistant: ") == 2


def test_generate_text_greedy_matches_model_generate(tiny_model):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {chr(97 + i): i for i in range(26)} | {"<eos>": 26}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<eos>"))
    backend.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<eos>")
    texts = generate_text(tiny_model, tokenizer, "abc", max_new_tokens=5, temperature=0)
    ids = tiny_model.generate(torch.tensor([[0, 1, 2]]), max_new_tokens=5, do_sample=False, pad_token_id=26)
    assert texts == [tokenizer.decode(ids[0, 3:], skip_special_tokens=True)]
    assert len(generate_text(tiny_model, tokenizer, "ab", max_new_tokens=3, num_return_sequences=3, seed=0)) == 3


def test_streamer_holds_back_the_stop_string(gpt2_tokenizer):
    import io

    out = io.StringIO()
    streamer = StopAwareStreamer(gpt2_tokenizer, stream=out, stop_strings=("\n\nHuman:",))
    for piece in ["Sure", ", here", "\n", "\nHum", "an: more"]:
        streamer.on_finalized_text(piece)
    streamer.on_finalized_text("", stream_end=True)
    assert out.getvalue() == "Sure, here\n"
    assert strip_stop_strings(" Sure, here\n\nHuman: more") == "Sure, here"


def test_generate_works_on_a_stock_gpt2_folder_without_tokenizer(tiny_stock_gpt2, tmp_path, capsys):
    from hf_gpt2.cli import main

    tiny_stock_gpt2.save_pretrained(tmp_path / "stock")  # GPT2LMHeadModel, no tokenizer files
    args = ["generate", "--model", str(tmp_path / "stock"), "--prompt", "The", "--temperature", "0"]
    assert main([*args, "--max-new-tokens", "5"]) == 0
    out = capsys.readouterr().out
    expected = tiny_stock_gpt2.generate(torch.tensor([[464]]), max_new_tokens=5, do_sample=False, pad_token_id=50256)
    from hf_gpt2 import load_gpt2_tokenizer

    assert out == load_gpt2_tokenizer().decode(expected[0]) + "\n"  # "The" is token 464

"""Shared fixtures. Everything is offline: the Hub is never contacted from tests."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_EVALUATE_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

# marks of transformers' own test files, which tests/test_transformers_common.py runs
_TRANSFORMERS_MARKS = (
    "accelerate_tests",
    "flash_attn_test",
    "flash_attn_3_test",
    "flash_attn_4_test",
    "torch_compile_test",
)


def pytest_configure(config: pytest.Config) -> None:
    for mark in _TRANSFORMERS_MARKS:
        config.addinivalue_line("markers", f"{mark}: a mark of transformers' common model tests")


TINY_SHAPE = {
    "n_positions": 64,
    "n_embd": 32,
    "n_layer": 2,
    "n_head": 4,
    "resid_pdrop": 0.0,
    "embd_pdrop": 0.0,
    "attn_pdrop": 0.0,
}
"""The 2-layer, 32-wide shape (dropout off) of the tiny models shared by the tests."""


@pytest.fixture(scope="session")
def gpt2_tokenizer():
    """OpenAI's GPT-2 BPE as a transformers tokenizer (built offline once per session)."""
    from hf_gpt2 import load_gpt2_tokenizer

    return load_gpt2_tokenizer()


@pytest.fixture
def tiny_config():
    """A 2-layer, 32-wide GPT-2 config with a small vocabulary and dropout off."""
    from hf_gpt2 import HfGPT2Config

    return HfGPT2Config(vocab_size=96, bos_token_id=0, eos_token_id=0, **TINY_SHAPE)


@pytest.fixture
def tiny_model(tiny_config):
    """A seeded tiny HfGPT2ForCausalLM in eval mode."""
    from hf_gpt2 import HfGPT2ForCausalLM

    torch.manual_seed(0)
    return HfGPT2ForCausalLM(tiny_config).eval()


@pytest.fixture
def tiny_stock_gpt2():
    """A seeded tiny stock transformers GPT2LMHeadModel with GPT-2's full vocabulary (so the BPE tokenizer fits)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(vocab_size=50257, **TINY_SHAPE)
    return GPT2LMHeadModel(config).eval()

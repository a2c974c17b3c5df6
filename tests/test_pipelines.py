"""transformers pipelines give the same answers with hf_gpt2 as with stock GPT-2, for every head.

transformers' ``PipelineTesterMixin`` needs the Hub's tiny models and pipeline test files that are not in its sdist,
so the pipelines run here directly, side by side on the same seeded weights.
"""

from __future__ import annotations

import pytest
import torch
import transformers
from transformers import GPT2Config, pipeline

from hf_gpt2.convert import from_gpt2

pytestmark = pytest.mark.slow

TASKS = {
    "text-generation": "GPT2LMHeadModel",
    "feature-extraction": "GPT2Model",
    "text-classification": "GPT2ForSequenceClassification",
    "token-classification": "GPT2ForTokenClassification",
}  # (transformers 5 removed the question-answering pipeline)
TEXTS = ["The dog ran to the", "A long sentence about the weather in the north of the country"]


def _call(pipe, task: str):
    if task == "text-generation":
        return pipe(TEXTS, max_new_tokens=5, do_sample=False, batch_size=2)
    return pipe(TEXTS, batch_size=2)


@pytest.mark.parametrize("task", list(TASKS))
def test_pipeline_gives_stock_gpt2s_answers(task, gpt2_tokenizer):
    tokenizer = gpt2_tokenizer
    tokenizer.pad_token = tokenizer.eos_token
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=50257, n_positions=128, n_embd=32, n_layer=2, n_head=4, num_labels=3,
                        pad_token_id=tokenizer.eos_token_id)  # fmt: skip
    stock = getattr(transformers, TASKS[task])(config).eval()
    results = [_call(pipeline(task, model=model, tokenizer=tokenizer), task) for model in (stock, from_gpt2(stock))]
    if task == "feature-extraction":
        for a, b in zip(*results, strict=True):
            torch.testing.assert_close(torch.tensor(b), torch.tensor(a), rtol=1e-4, atol=1e-5)
        return
    assert _rounded(results[1]) == _rounded(results[0])


def _rounded(value):
    """Scores to 4 decimals (fp32 noise between two implementations of the same maths)."""
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    return value

"""``generate`` in each of its modes gives stock GPT-2's tokens and scores.

transformers' own ``GenerationTesterMixin`` is not in the transformers sdist (see ``transformers_suite``), so the
modes it covers run here side by side: the same seeded tiny GPT-2 as ``GPT2LMHeadModel`` and converted to hf_gpt2.
"""

from __future__ import annotations

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from hf_gpt2.convert import from_gpt2

pytestmark = pytest.mark.slow  # tests/test_model.py keeps greedy, token-type and output-recording parity fast

MODES = {
    "greedy": {"do_sample": False},
    "greedy-no-cache": {"do_sample": False, "use_cache": False},
    "static-cache": {"do_sample": False, "cache_implementation": "static"},
    "sample": {"do_sample": True, "top_k": 20, "top_p": 0.9, "temperature": 0.8},
    "beam-search": {"do_sample": False, "num_beams": 3, "num_return_sequences": 2, "length_penalty": 0.7},
    "beam-sample": {"do_sample": True, "num_beams": 2, "top_k": 10},
    "penalties": {"do_sample": False, "repetition_penalty": 1.3, "no_repeat_ngram_size": 2, "min_new_tokens": 5},
    "prompt-lookup": {"do_sample": False, "prompt_lookup_num_tokens": 2},
}


@pytest.fixture(scope="module")
def pair():
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=211, n_positions=64, n_embd=32, n_layer=2, n_head=4, bos_token_id=7,
                        eos_token_id=7, pad_token_id=0)  # fmt: skip
    stock = GPT2LMHeadModel(config).eval()
    return stock, from_gpt2(stock)


def _prompt(left_padded: bool) -> dict:
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(8, 211, (2, 6), generator=g)
    mask = torch.ones_like(ids)
    if left_padded:
        ids[0, :2], mask[0, :2] = 0, 0
    return {"input_ids": ids, "attention_mask": mask}


CASES = [
    pytest.param(mode, left_padded, id=f"{mode}-{'left-padded' if left_padded else 'full'}")
    for mode in MODES
    for left_padded in (False, True)
    if not (mode == "prompt-lookup" and left_padded)  # prompt-lookup decoding takes batch size 1
]


@pytest.mark.parametrize(("mode", "left_padded"), CASES)
def test_generate_equals_stock_gpt2(pair, mode, left_padded):
    kwargs = {**MODES[mode], "max_new_tokens": 8, "return_dict_in_generate": True, "output_scores": True}
    inputs = _prompt(left_padded)
    if mode == "prompt-lookup":
        inputs = {k: v[:1] for k, v in inputs.items()}
    results = []
    for model in pair:
        torch.manual_seed(4)
        results.append(model.generate(**inputs, **kwargs))
    stock, ours = results
    assert torch.equal(ours.sequences, stock.sequences)
    assert len(ours.scores) == len(stock.scores) > 0
    for a, b in zip(ours.scores, stock.scores, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_generation_continues_from_a_returned_cache_like_stock_gpt2(pair):
    inputs = _prompt(False)
    outputs = []
    for model in pair:
        first = model.generate(**inputs, max_new_tokens=3, do_sample=False, return_dict_in_generate=True)
        mask = torch.ones_like(first.sequences)
        outputs.append(
            model.generate(first.sequences, attention_mask=mask, cache=first.cache, max_new_tokens=4, do_sample=False)
        )
    assert torch.equal(outputs[1], outputs[0])
    assert torch.equal(outputs[1], pair[0].generate(**inputs, max_new_tokens=7, do_sample=False))


def test_generation_from_inputs_embeds_like_stock_gpt2(pair):
    inputs = _prompt(True)
    outputs = []
    for model in pair:
        embeds = model.get_input_embeddings()(inputs["input_ids"])
        outputs.append(model.generate(inputs_embeds=embeds, attention_mask=inputs["attention_mask"],
                                      max_new_tokens=5, do_sample=False))  # fmt: skip
    assert torch.equal(outputs[1], outputs[0])

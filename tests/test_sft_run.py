"""A tiny SFT run through the real training loop: converted stock GPT-2, local hh-rlhf-format jsonl, lower loss."""

from __future__ import annotations

import json

import pytest
import torch

from hf_gpt2.data.sft import CHAT_TEMPLATE, SFTLoader, prepare_sft_data
from hf_gpt2.recipe import recipe_from_dict

COLORS = {"sky": "blue", "grass": "green", "snow": "white", "coal": "black", "blood": "red", "sun": "yellow"}


def hh_rows(n):
    things = list(COLORS)
    rows = []
    for i in range(n):
        a, b = things[i % len(things)], things[(i * 5 + 1) % len(things)]
        chosen = f"\n\nHuman: What color is the {a}?\n\nAssistant: The {a} is {COLORS[a]}."
        if i % 3 == 0:  # some multi-turn conversations
            chosen += f"\n\nHuman: And the {b}?\n\nAssistant: The {b} is {COLORS[b]}."
        rows.append({"chosen": chosen, "rejected": "\n\nHuman: ?\n\nAssistant: No."})
    return rows


def response_loss(model, prepared, recipe):
    """Mean loss over the trained (assistant) tokens of the validation conversations."""
    loader = SFTLoader(prepared, "val", recipe.data.block_size, 8, recipe.run.seed)
    batch = next(loader)
    with torch.no_grad():
        model.eval()
        return model(**batch, use_cache=False).loss.item()


@pytest.mark.slow
def test_tiny_sft_run_lowers_the_response_loss(tmp_path, tiny_stock_gpt2, gpt2_tokenizer):
    from hf_gpt2.convert import load_causal_lm
    from hf_gpt2.pipeline import run_pipeline

    tiny_stock_gpt2.save_pretrained(tmp_path / "stock")  # a stock GPT-2 folder: converted on load
    source = tmp_path / "hh.jsonl"
    source.write_text("".join(json.dumps(row) + "\n" for row in hh_rows(96)))
    recipe = recipe_from_dict(
        {
            "run": {"name": "sft", "output_dir": str(tmp_path / "runs"), "seed": 0, "log_every": 10},
            "model": {"init": str(tmp_path / "stock")},
            "data": {"source": str(source), "format": "sft", "sft_format": "hh", "text_field": "chosen",
                     "packing": True, "block_size": 64, "val_fraction": 0.1, "cache_dir": str(tmp_path / "cache")},
            "train": {"max_steps": 40, "micro_batch_size": 4, "eval_every": 0, "eval_batches": 2, "save_every": 40,
                      "trainable": ["transformer.h.*", "transformer.ln_f.*", "transformer.wte.*"]},
            "optim": {"lr": 1e-2, "min_lr": 1e-3, "warmup_steps": 4, "weight_decay": 0.0},
            "sample": {"prompts": ["\n\nHuman: What color is the sky?\n\nAssistant:"], "max_new_tokens": 6},
        }
    )  # fmt: skip
    before = response_loss(load_causal_lm(tmp_path / "stock"), prepare_sft_data(recipe, gpt2_tokenizer), recipe)

    run_dir = run_pipeline(recipe)

    release = load_causal_lm(run_dir / "final")
    after = response_loss(release, prepare_sft_data(recipe, gpt2_tokenizer), recipe)
    assert after < 0.5 * before, (before, after)  # measured: 10.8 -> 1.0
    from transformers import AutoTokenizer

    assert AutoTokenizer.from_pretrained(run_dir / "final").chat_template == CHAT_TEMPLATE
    assert json.loads((run_dir / "eval.json").read_text())["val_loss"] < before
    # the run's last checkpoint is a starting point too (model.init), with the release's weights
    from hf_gpt2.finetune.init_model import load_init_model

    x = torch.randint(0, 50257, (1, 12))
    torch.testing.assert_close(load_init_model(run_dir / "checkpoints" / "step-40")(x).logits, release(x).logits)

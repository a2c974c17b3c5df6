"""model.init from a training checkpoint (resume state without config.json), plain or LoRA, as a plain model."""

from __future__ import annotations

import json

import pytest
import torch
from accelerate import Accelerator

from hf_gpt2 import HfGPT2Config, HfGPT2ForCausalLM
from hf_gpt2.errors import CheckpointError
from hf_gpt2.finetune.init_model import is_training_checkpoint, load_init_model
from hf_gpt2.finetune.lora import apply_lora
from hf_gpt2.recipe import dump_recipe, model_config_kwargs, recipe_from_dict


def fake_run(tmp_path, lora_r=0):
    """A run folder with recipe.yaml and checkpoints/step-1 written by accelerate's save_state, as the loop does."""
    recipe = recipe_from_dict(
        {
            "model": {"n_layer": 2, "n_head": 4, "n_embd": 32, "n_positions": 64, "vocab_size": 50257},
            "data": {"block_size": 32},
            "train": {"max_steps": 1, "micro_batch_size": 1, "lora": {"r": lora_r}},
            "sample": {"max_new_tokens": 16},
        }
    )
    torch.manual_seed(0)
    model = HfGPT2ForCausalLM(HfGPT2Config(**model_config_kwargs(recipe)))
    model = apply_lora(model, recipe)
    with torch.no_grad():  # make the adapters matter
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(std=0.1)
    run = tmp_path / "runs" / "demo"
    folder = run / "checkpoints" / "step-1"
    folder.mkdir(parents=True)
    dump_recipe(recipe, run / "recipe.yaml")
    accelerator = Accelerator(cpu=True)
    prepared = accelerator.prepare(model)
    accelerator.save_state(str(folder))
    (folder / "train_state.json").write_text(json.dumps({"step": 1}))
    return folder, accelerator.unwrap_model(prepared).eval()


@pytest.mark.parametrize("lora_r", [0, 4])
def test_checkpoint_loads_as_a_plain_model_with_the_same_logits(tmp_path, lora_r):
    folder, trained = fake_run(tmp_path, lora_r)
    assert is_training_checkpoint(folder) and not (folder / "config.json").exists()
    model = load_init_model(folder)
    assert type(model) is HfGPT2ForCausalLM
    assert model.lm_head.weight.data_ptr() == model.transformer.wte.weight.data_ptr()
    x = torch.randint(0, 50257, (2, 10))
    torch.testing.assert_close(model(x).logits, trained(input_ids=x).logits, atol=1e-5, rtol=1e-5)


def test_checkpoint_without_its_run_recipe_is_a_clear_error(tmp_path):
    folder, _ = fake_run(tmp_path)
    (folder.parent.parent / "recipe.yaml").unlink()
    with pytest.raises(CheckpointError, match="no config.json and no recipe.yaml"):
        load_init_model(folder)

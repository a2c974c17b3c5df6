"""LoRA: only the adapters change, the merged release has the adapted logits, kept adapters reload exactly."""

from __future__ import annotations

import pytest
import torch

from hf_gpt2 import HfGPT2ForCausalLM
from hf_gpt2.commands.generate import load_for_generation
from hf_gpt2.errors import RecipeError
from hf_gpt2.finetune.lora import ADAPTER_DIR, apply_lora, is_peft_model, merge_for_release, save_adapter
from hf_gpt2.recipe import recipe_from_dict
from hf_gpt2.training.optim import build_optimizers


def recipe(**train):
    lora = {"r": 4, "alpha": 8, "target_modules": ["c_attn", "c_proj", "c_fc"], **train.pop("lora", {})}
    return recipe_from_dict({"train": {"max_steps": 2, "micro_batch_size": 2, "lora": lora, **train},
                             "optim": {"lr": 1e-2}})  # fmt: skip


def trained_lora_model(model, r):
    lora = apply_lora(model.train(), r)
    optimizer = build_optimizers(lora, r.optim, torch.device("cpu"))[0]
    x = torch.randint(0, model.config.vocab_size, (2, 16))
    for _ in range(3):
        lora(input_ids=x, labels=x, use_cache=False).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return lora.eval()


def test_only_adapters_change_and_merge_keeps_the_logits(tiny_model, tmp_path):
    before = {name: p.detach().clone() for name, p in tiny_model.named_parameters()}
    lora = trained_lora_model(tiny_model, recipe())
    changed = {n for n, p in lora.named_parameters() if "lora_" in n and not torch.equal(p, torch.zeros_like(p))}
    assert any("lora_B" in n for n in changed)  # B starts at zero: it moved
    for name, p in lora.get_base_model().named_parameters():
        if "lora_" not in name:
            assert torch.equal(p, before[name.replace(".base_layer", "")]), name
    x = torch.randint(0, tiny_model.config.vocab_size, (2, 12))
    adapted = lora(input_ids=x).logits
    merged = merge_for_release(lora)
    assert type(merged) is HfGPT2ForCausalLM and is_peft_model(lora)  # the training model is left as it was
    torch.testing.assert_close(merged(x).logits, adapted, atol=1e-5, rtol=1e-5)
    merged.save_pretrained(tmp_path / "release")
    reloaded = HfGPT2ForCausalLM.from_pretrained(tmp_path / "release").eval()
    torch.testing.assert_close(reloaded(x).logits, adapted, atol=1e-5, rtol=1e-5)


def test_kept_adapters_reload_on_the_base_release(tiny_model, tmp_path):
    from peft import PeftModel

    lora = trained_lora_model(tiny_model, recipe(lora={"merge": False}))
    base = merge_for_release(lora, merge=False)
    base.save_pretrained(tmp_path / "final")
    save_adapter(lora, tmp_path / "final" / ADAPTER_DIR)
    assert (tmp_path / "final" / ADAPTER_DIR / "adapter_config.json").is_file()
    x = torch.randint(0, tiny_model.config.vocab_size, (2, 12))
    release = HfGPT2ForCausalLM.from_pretrained(tmp_path / "final").eval()
    assert not torch.allclose(release(x).logits, lora(input_ids=x).logits)
    restored = PeftModel.from_pretrained(release, tmp_path / "final" / ADAPTER_DIR).eval()
    torch.testing.assert_close(restored(input_ids=x).logits, lora(input_ids=x).logits, atol=1e-5, rtol=1e-5)
    generator, _ = load_for_generation(str(tmp_path / "final"), "cpu", "auto")  # hf-gpt2 generate applies it too
    torch.testing.assert_close(generator(input_ids=x).logits, lora(input_ids=x).logits, atol=1e-5, rtol=1e-5)


def test_lora_with_trainable_patterns_and_bad_targets(tiny_config):
    torch.manual_seed(0)
    lora = apply_lora(HfGPT2ForCausalLM(tiny_config), recipe(trainable=["transformer.ln_f.*"]))
    trained = {n.removeprefix("base_model.model.") for n, p in lora.named_parameters() if p.requires_grad}
    assert {"transformer.ln_f.weight", "transformer.ln_f.bias"} <= trained
    assert all("lora_" in n or n.startswith("transformer.ln_f.") for n in trained)
    with pytest.raises(RecipeError, match=r"\['q_proj'\] are not Linear layers; choose from .*'c_attn'"):
        apply_lora(HfGPT2ForCausalLM(tiny_config), recipe(lora={"target_modules": ["q_proj"]}))

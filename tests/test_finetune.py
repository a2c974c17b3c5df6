"""train.trainable: glob patterns (negative block indices), errors that list the names, frozen weights stay put."""

from __future__ import annotations

import pytest
import torch

from hf_gpt2.errors import RecipeError
from hf_gpt2.finetune import apply_trainable, resolve_block_indices
from hf_gpt2.recipe import recipe_from_dict
from hf_gpt2.training.optim import build_optimizers

LAST_BLOCK_AND_LN_F = ["transformer.h.-1.*", "transformer.ln_f.*"]


def recipe(**train):
    return recipe_from_dict({"train": {"max_steps": 2, "micro_batch_size": 2, **train}, "optim": {"lr": 1e-2}})


def test_negative_block_indices_count_from_the_end():
    assert resolve_block_indices("transformer.h.-1.*", 12) == "transformer.h.11.*"
    assert resolve_block_indices("h.-12.attn.*", 12) == "h.0.attn.*"
    assert resolve_block_indices("transformer.h.3.*", 12) == "transformer.h.3.*"
    with pytest.raises(RecipeError, match="block -13 does not exist"):
        resolve_block_indices("transformer.h.-13.*", 12)


def test_patterns_select_the_trained_parameters(tiny_model):
    apply_trainable(tiny_model, recipe(trainable=LAST_BLOCK_AND_LN_F))
    trained = {name for name, p in tiny_model.named_parameters() if p.requires_grad}
    wanted = ("transformer.h.1.", "transformer.ln_f.")
    assert trained == {name for name, _ in tiny_model.named_parameters() if name.startswith(wanted)}
    assert apply_trainable(tiny_model, recipe()) is tiny_model  # None: left as it is
    assert {name for name, p in tiny_model.named_parameters() if p.requires_grad} == trained


def test_pattern_matching_nothing_lists_the_names(tiny_model):
    with pytest.raises(
        RecipeError, match=r"\['transformer\.h\.7\.\*'\] match no parameter.*transformer\.h\.\{0\.\.1\}"
    ):
        apply_trainable(tiny_model, recipe(trainable=["transformer.h.7.*", "transformer.ln_f.*"]))
    with pytest.raises(RecipeError, match="at least one"):
        apply_trainable(tiny_model, recipe(trainable=[]))


def test_tied_head_pattern_trains_the_embedding(tiny_model):
    apply_trainable(tiny_model, recipe(trainable=["lm_head.weight"]))
    assert tiny_model.transformer.wte.weight.requires_grad and tiny_model.lm_head.weight.requires_grad
    assert not tiny_model.transformer.wpe.weight.requires_grad


def test_frozen_parameters_unchanged_after_optimizer_steps(tiny_model):
    r = recipe(trainable=LAST_BLOCK_AND_LN_F)
    apply_trainable(tiny_model.train(), r)
    before = {name: p.detach().clone() for name, p in tiny_model.named_parameters()}
    optimizer = build_optimizers(tiny_model, r.optim, torch.device("cpu"))[0]  # weight decay 0.1 on matrices
    x = torch.randint(0, tiny_model.config.vocab_size, (2, 16))
    for _ in range(3):
        tiny_model(x, labels=x, use_cache=False).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    for name, p in tiny_model.named_parameters():
        assert torch.equal(p, before[name]) != p.requires_grad, name

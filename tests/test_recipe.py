"""Recipes are strict and tested like code: every shipped file loads, typos and bad values are named, overrides and
the dump/load round trip work."""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path

import pytest

from hf_gpt2.errors import RecipeError
from hf_gpt2.recipe import (
    DEV_MAX_DOCUMENTS,
    SECTIONS,
    ModelConfig,
    Recipe,
    TrainConfig,
    apply_overrides,
    dump_recipe,
    effective_max_documents,
    load_recipe,
    model_config_kwargs,
    recipe_from_dict,
    recipe_reference_markdown,
    recipe_to_dict,
)

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
SHIPPED = sorted(RECIPES.glob("*.yaml"))
MINIMAL = {"train": {"max_steps": 10, "micro_batch_size": 2}}


def test_the_four_issue_recipes_are_shipped():
    assert {"quickstart.yaml", "dev.yaml", "full.yaml", "fineweb.yaml"} <= {p.name for p in SHIPPED}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_recipe_loads_and_round_trips(path, tmp_path):
    recipe = load_recipe(path)
    assert isinstance(recipe, Recipe)
    recipe.train.accum_steps(recipe.data.block_size, 1)  # the global batch resolves on one process
    assert load_recipe(dump_recipe(recipe, tmp_path / "recipe.yaml")) == recipe


def test_quickstart_is_offline_and_small():
    recipe = load_recipe(RECIPES / "quickstart.yaml")
    assert recipe.data.source == "kjv" and recipe.tokenizer.name == "gpt2" and recipe.model.init == "scratch"
    assert recipe.model.n_layer <= 6 and recipe.model.n_embd <= 384


def test_full_recipe_matches_nanogpt_llmc():
    recipe = load_recipe(RECIPES / "full.yaml")
    assert recipe.train.global_batch_tokens == 524288 and recipe.data.block_size == 1024
    assert (recipe.optim.lr, recipe.optim.min_lr, recipe.optim.warmup_steps) == (6e-4, 6e-5, 700)
    assert (recipe.optim.beta1, recipe.optim.beta2, recipe.optim.weight_decay) == (0.9, 0.95, 0.1)
    assert recipe.train.accum_steps(1024, 8) * 8 * recipe.train.micro_batch_size * 1024 == 524288


def test_typos_get_did_you_mean_and_all_problems_come_at_once():
    with pytest.raises(RecipeError) as err:
        recipe_from_dict(MINIMAL, ["train.max_stesp=3", "optim.warmup=10", "trian.seed=1", "train.lr=1e-3"])
    message = str(err.value)
    assert "4 problems" in message
    assert "train.max_stesp: unknown key (did you mean train.max_steps?)" in message
    assert "did you mean optim.warmup_steps?" in message
    assert "did you mean 'train'?" in message
    assert "did you mean optim.lr?" in message  # the right key in the wrong section


def test_unknown_key_in_yaml_file_names_the_file(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("train:\n  max_steps: 5\n  micro_batch_size: 1\nmodel:\n  n_embed: 64\n")
    with pytest.raises(RecipeError, match=r"r\.yaml: model\.n_embed: unknown key \(did you mean model\.n_embd\?\)"):
        load_recipe(path)


def test_wrong_type_names_the_key_and_value():
    with pytest.raises(RecipeError, match=r"train\.max_steps='soon': expected an int"):
        recipe_from_dict(MINIMAL, ["train.max_steps=soon"])
    with pytest.raises(RecipeError, match=r"run\.dev='maybe': expected a bool"):
        recipe_from_dict(MINIMAL, ["run.dev=maybe"])


def test_yaml_strings_and_overrides_are_coerced():
    recipe = recipe_from_dict(
        {"optim": {"lr": "3e-4"}, "train": {"max_steps": "1e3", "micro_batch_size": 2, "global_batch_tokens": 4096}},
        [
            "run.dev=true",
            "run.name=null",
            "model.n_inner=null",
            "train.lora.r=8",
            "train.lora.target_modules=[c_attn, c_fc]",
            "sample.prompts=Once upon a time",
            "sample.top_p=0.9",
            "eval.data={lambada: /tmp/lambada.jsonl}",
            "data.block_size=256",
            "model.n_positions=256",
        ],
    )
    assert recipe.optim.lr == 3e-4 and isinstance(recipe.optim.lr, float)
    assert recipe.train.max_steps == 1000 and isinstance(recipe.train.max_steps, int)
    assert recipe.run.dev is True and recipe.run.name is None and recipe.model.n_inner is None
    assert recipe.train.lora.r == 8 and recipe.train.lora.target_modules == ["c_attn", "c_fc"]
    assert recipe.sample.prompts == ["Once upon a time"] and recipe.sample.top_p == 0.9
    assert recipe.eval.data == {"lambada": "/tmp/lambada.jsonl"}
    assert recipe.train.accum_steps(256, 1) == 8


def test_cross_field_checks():
    cases = {
        "model.n_embd=100": "not divisible by model.n_head=12",
        "data.block_size=2048": "exceeds model.n_positions=1024",
        "train.grad_accum_steps=4": "set only one of train.global_batch_tokens and train.grad_accum_steps",
        "optim.schedule=cosin": "did you mean 'cosine'?",
        "optim.min_lr=1": "optim.min_lr must be in [0, optim.lr=",
        "hub.push_final=true": "hub.repo_id (USER/NAME) is required",
        "model.vocab_size=1000": "smaller than the GPT-2 tokenizer",
    }
    base = {"train": {"max_steps": 10, "micro_batch_size": 2, "global_batch_tokens": 4096}}
    for override, expected in cases.items():
        with pytest.raises(RecipeError) as err:
            recipe_from_dict(base, [override])
        assert expected in str(err.value), (override, str(err.value))


def test_global_batch_not_divisible_names_the_numbers():
    recipe = recipe_from_dict({"train": {"max_steps": 1, "micro_batch_size": 4, "global_batch_tokens": 8192}})
    assert recipe.train.accum_steps(1024, 1) == 2 and recipe.train.accum_steps(1024, 2) == 1
    with pytest.raises(RecipeError, match=r"4 × 1024 × 3 = 12288; use a multiple of 12288"):
        recipe.train.accum_steps(1024, 3)
    with pytest.raises(RecipeError, match="not a multiple"):
        recipe_from_dict({"train": {"max_steps": 1, "micro_batch_size": 4, "global_batch_tokens": 1000}})


def test_missing_required_key_and_missing_file(tmp_path):
    with pytest.raises(RecipeError, match=r"train\.micro_batch_size is required"):
        recipe_from_dict({"train": {"max_steps": 1}})
    with pytest.raises(RecipeError, match="not found"):
        load_recipe(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1, 2\n")
    with pytest.raises(RecipeError, match="not valid YAML"):
        load_recipe(bad)


def test_malformed_override():
    with pytest.raises(RecipeError, match="must look like section.key=value"):
        recipe_from_dict(MINIMAL, ["max_steps"])


def test_apply_overrides_returns_a_new_recipe():
    recipe = recipe_from_dict(MINIMAL)
    changed = apply_overrides(recipe, ["train.max_steps=3"])
    assert changed.train.max_steps == 3 and recipe.train.max_steps == 10
    assert recipe_to_dict(changed)["train"]["lora"]["r"] == 0


def test_dev_mode_caps_documents():
    recipe = recipe_from_dict(MINIMAL, ["run.dev=true"])
    assert effective_max_documents(recipe) == DEV_MAX_DOCUMENTS
    assert effective_max_documents(apply_overrides(recipe, ["data.max_documents=7"])) == 7
    assert effective_max_documents(recipe_from_dict(MINIMAL)) is None


def test_model_section_mirrors_the_model_config():
    kwargs = model_config_kwargs(recipe_from_dict(MINIMAL, ["model.n_layer=2"]))
    assert kwargs["n_layer"] == 2 and "init" not in kwargs and "dtype" not in kwargs
    try:
        from hf_gpt2 import HfGPT2Config
    except ImportError:  # before the model lands, compare with stock GPT-2's config
        from transformers import GPT2Config as HfGPT2Config
    config = HfGPT2Config(**kwargs)
    for name, value in kwargs.items():
        assert getattr(config, name) == value, name
    defaults = {f.name: f.default for f in dataclasses.fields(ModelConfig)}
    params = inspect.signature(HfGPT2Config.__init__).parameters
    every_field = {name for name, p in params.items() if name != "self" and p.kind is p.POSITIONAL_OR_KEYWORD}
    assert every_field <= set(kwargs), f"HfGPT2Config fields missing under model.: {every_field - set(kwargs)}"
    for name in kwargs:
        if name in params and params[name].default is not inspect.Parameter.empty:
            # null special ids take the tokenizer's, which for the default tokenizer (gpt2) are the config's
            expected = kwargs[name] if defaults[name] is None and name.endswith("_token_id") else defaults[name]
            assert expected == params[name].default, f"model.{name} default differs from the config's"


def test_every_field_is_documented_and_in_the_reference():
    reference = recipe_reference_markdown()
    readme = (RECIPES / "README.md").read_text()
    for section, cls in SECTIONS.items():
        for f in dataclasses.fields(cls):
            key = f"`{section}.{f.name}`"
            assert key in reference and key in readme, f"{key} is missing from recipes/README.md"
    for f in dataclasses.fields(TrainConfig.__dataclass_fields__["lora"].default_factory()):
        assert f"`train.lora.{f.name}`" in readme

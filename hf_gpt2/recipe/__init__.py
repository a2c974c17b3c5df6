"""Recipes: typed dataclass sections loaded strictly from YAML, with dotted overrides.

A recipe is one YAML file with the sections ``run``, ``model``, ``tokenizer``, ``data``, ``train``, ``optim``,
``sample``, ``eval`` and ``hub``. Overrides follow the file as ``section.key=value`` (or ``section.sub.key=value``,
e.g. ``train.lora.r=8``)::

    recipe = load_recipe("recipes/quickstart.yaml", ["train.max_steps=20", "optim.lr=3e-4"])
    dump_recipe(recipe, run_dir / "recipe.yaml")          # load_recipe(run_dir / "recipe.yaml") == recipe

- :mod:`~hf_gpt2.recipe.sections`: one class per section, each field documented by its docstring and each section
  with its own checks; :class:`Recipe` holds them and reports every problem at once;
- :mod:`~hf_gpt2.recipe.rules`: the checks that span sections;
- :mod:`~hf_gpt2.recipe.loading`: YAML, overrides, coercion to the field types, did-you-mean for unknown keys;
- :mod:`~hf_gpt2.recipe.dump`: the resolved recipe as YAML (loads back to an equal recipe);
- :mod:`~hf_gpt2.recipe.reference`: ``recipes/README.md`` from the field docstrings.

Nothing here imports torch or transformers, so a recipe error is reported before any heavy import.
"""

from hf_gpt2.recipe.dump import dump_recipe, recipe_to_dict
from hf_gpt2.recipe.loading import apply_overrides, load_recipe, recipe_from_dict
from hf_gpt2.recipe.reference import REFERENCE_MARKER, field_docs, recipe_reference_markdown, update_reference
from hf_gpt2.recipe.sections import (
    DEV_MAX_DOCUMENTS,
    MODEL_CONFIG_FIELDS,
    SECTIONS,
    DataConfig,
    EvalConfig,
    HubConfig,
    LoraConfig,
    ModelConfig,
    OptimConfig,
    Recipe,
    RunConfig,
    SampleConfig,
    TokenizerConfig,
    TrainConfig,
    effective_max_documents,
    model_config_kwargs,
    recipe_problems,
)

__all__ = [
    "DEV_MAX_DOCUMENTS",
    "MODEL_CONFIG_FIELDS",
    "REFERENCE_MARKER",
    "SECTIONS",
    "DataConfig",
    "EvalConfig",
    "HubConfig",
    "LoraConfig",
    "ModelConfig",
    "OptimConfig",
    "Recipe",
    "RunConfig",
    "SampleConfig",
    "TokenizerConfig",
    "TrainConfig",
    "apply_overrides",
    "dump_recipe",
    "effective_max_documents",
    "field_docs",
    "load_recipe",
    "model_config_kwargs",
    "recipe_from_dict",
    "recipe_problems",
    "recipe_reference_markdown",
    "recipe_to_dict",
    "update_reference",
]

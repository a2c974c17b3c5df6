"""Recipes: typed dataclass sections loaded strictly from YAML, with dotted overrides."""

from hf_gpt2.recipe.sections import *  # noqa: F403

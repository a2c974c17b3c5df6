"""Writing a resolved recipe: every key, after overrides, as YAML that loads back to the same recipe."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from hf_gpt2.folders import write_text_atomically

if TYPE_CHECKING:
    from hf_gpt2.recipe.sections import Recipe


def recipe_to_dict(recipe: Recipe) -> dict[str, Any]:
    """Return the recipe as plain nested dicts and lists (YAML- and JSON-serializable), sections in order."""
    return dataclasses.asdict(recipe)


def dump_recipe(recipe: Recipe, path: str | Path) -> Path:
    """Write the resolved recipe as YAML; ``load_recipe(path)`` returns an equal recipe.

    The file is written to a temporary name and renamed, so a reader never sees half a recipe.
    """
    text = "# resolved hf_gpt2 recipe: every key, after overrides\n"
    text += yaml.safe_dump(recipe_to_dict(recipe), sort_keys=False, allow_unicode=True, width=119)
    return write_text_atomically(Path(path), text)

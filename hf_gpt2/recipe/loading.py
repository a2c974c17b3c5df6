"""Loading a recipe: YAML, then ``section.key=value`` overrides, every value coerced to its field's type.

Loading is strict: an unknown key is an error with a did-you-mean suggestion (also for the right key in the wrong
section, ``train.lr`` → ``optim.lr``), a value that does not fit its type names the key, and every problem is
reported at once in one :class:`~hf_gpt2.errors.RecipeError` (PyYAML reads ``3e-4`` as a string: it is coerced).
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from hf_gpt2.errors import RecipeError
from hf_gpt2.recipe.dump import recipe_to_dict
from hf_gpt2.recipe.problems import did_you_mean, format_problems
from hf_gpt2.recipe.sections import SECTIONS, Recipe, recipe_problems

_NULL_WORDS = ("null", "none", "~", "")
_TRUE_WORDS = ("true", "yes", "on", "1")
_FALSE_WORDS = ("false", "no", "off", "0")


def recipe_from_dict(raw: Mapping[str, Any], overrides: Sequence[str] = (), *, origin: str | None = None) -> Recipe:
    """Build a :class:`Recipe` from a nested mapping (as read from YAML) plus dotted overrides.

    Raises:
        RecipeError: listing every unknown key, bad value, bad override and failed check at once.
    """
    problems: list[str] = []
    merged = _nested_copy(raw)
    for override in overrides:
        _apply_override(merged, override, problems)
    sections: dict[str, Any] = {}
    for name, value in merged.items():
        if name not in SECTIONS:
            problems.append(
                f"{name}: unknown section{did_you_mean(str(name), SECTIONS)}; sections: {', '.join(SECTIONS)}"
            )
            continue
        if value is None:
            value = {}
        if not isinstance(value, Mapping):
            problems.append(f"{name}: expected a mapping of {name}.* keys, got {value!r}")
            continue
        sections[name] = value
    built = {name: _build_section(cls, sections.get(name, {}), f"{name}.", problems) for name, cls in SECTIONS.items()}
    if problems:
        # Report the checks too, except those about keys whose values were already rejected.
        bad_keys = {k for p in problems if "." in (k := p.split("=")[0].split(":")[0].split(" ")[0])}
        checks = recipe_problems(types.SimpleNamespace(**built))  # type: ignore[arg-type]
        problems += [p for p in checks if not any(k in p for k in bad_keys)]
        raise RecipeError(format_problems(problems, origin))
    try:
        return Recipe(**built)
    except RecipeError as err:
        raise RecipeError(f"{origin}: {err}" if origin else str(err)) from None


def load_recipe(path: str | Path, overrides: Sequence[str] = ()) -> Recipe:
    """Load a recipe YAML file strictly and apply ``section.key=value`` overrides.

    Args:
        path: the recipe file, e.g. ``recipes/quickstart.yaml``.
        overrides: ``section.key=value`` strings (``section.sub.key=value`` for nested sections), applied in order.

    Raises:
        RecipeError: for a missing or unparsable file, and for every problem of the recipe, all in one message.
    """
    path = Path(path)
    if not path.is_file():
        shipped = sorted(p.name for p in Path("recipes").glob("*.yaml")) if Path("recipes").is_dir() else []
        hint = f"; shipped recipes in recipes/: {', '.join(shipped)}" if shipped else ""
        found = "is a folder, not a YAML file" if path.is_dir() else "not found"
        raise RecipeError(f"recipe file {str(path)!r} {found}{hint}")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise RecipeError(f"{path} is not valid YAML: {' '.join(str(err).split())}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise RecipeError(
            f"{path}: a recipe is a mapping of sections ({', '.join(SECTIONS)}), got {type(raw).__name__}"
        )
    return recipe_from_dict(raw, overrides, origin=str(path))


def apply_overrides(recipe: Recipe, overrides: Sequence[str]) -> Recipe:
    """Return a new recipe with ``section.key=value`` overrides applied (the original is unchanged)."""
    return recipe_from_dict(recipe_to_dict(recipe), overrides)


def _apply_override(tree: dict[str, Any], override: str, problems: list[str]) -> None:
    key, sep, value = override.partition("=")
    parts = key.strip().split(".")
    if not sep or len(parts) < 2 or not all(parts):
        problems.append(f"override {override!r} must look like section.key=value (e.g. train.max_steps=100)")
        return
    node = tree
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            problems.append(f"override {override!r}: {part} is not a section")
            return
        node = child
    node[parts[-1]] = value  # a string; _coerce converts it to the field's type


def _nested_copy(raw: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _nested_copy(v) if isinstance(v, Mapping) else v for k, v in raw.items()}


class _Invalid(Exception):
    """A value does not fit a field's type; the message says what was expected."""


@cache
def field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _coerce(value: Any, annotation: Any) -> Any:
    """Return ``value`` converted to ``annotation`` (int, float, bool, str, list[str], dict[str, str], X | None)."""
    origin = typing.get_origin(annotation)
    if origin in (types.UnionType, typing.Union):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.strip().lower() in _NULL_WORDS):
            return None
        return _coerce(value, args[0])
    if value is None:
        raise _Invalid(f"expected {type_name(annotation)}, got null")
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE_WORDS + _FALSE_WORDS:
            return value.strip().lower() in _TRUE_WORDS
        raise _Invalid("expected a bool (true/false)")
    if annotation is int:
        if isinstance(value, bool):
            raise _Invalid("expected an int")
        if isinstance(value, int):
            return value
        number = _parse_number(value, "an int")
        if not float(number).is_integer():
            raise _Invalid("expected an int")
        return int(number)
    if annotation is float:
        if isinstance(value, bool):
            raise _Invalid("expected a float")
        return float(_parse_number(value, "a float"))
    if annotation is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise _Invalid("expected a string")
    if origin is list:
        (item_type,) = typing.get_args(annotation)
        if isinstance(value, str):
            value = _parse_yaml_value(value) if value.lstrip().startswith("[") else [value]
        if not isinstance(value, list):
            raise _Invalid("expected a list, e.g. [a, b]")
        return [_coerce(item, item_type) for item in value]
    if origin is dict:
        key_type, value_type = typing.get_args(annotation)
        if isinstance(value, str):
            value = _parse_yaml_value(value)
        if not isinstance(value, dict):
            raise _Invalid("expected a mapping, e.g. {task: path}")
        return {_coerce(k, key_type): _coerce(v, value_type) for k, v in value.items()}
    raise TypeError(f"no coercion for {annotation!r}")  # a new field type needs a branch above


def _parse_number(value: Any, what: str) -> int | float:
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str):
        text = value.strip()
        for parse in (int, float):
            try:
                return parse(text)
            except ValueError:
                continue
    raise _Invalid(f"expected {what}")


def _parse_yaml_value(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise _Invalid(f"cannot parse {text!r} as YAML ({err.__class__.__name__})") from err


def type_name(annotation: Any) -> str:
    return getattr(annotation, "__name__", str(annotation))


def _build_section(cls: type, raw: Mapping[str, Any], prefix: str, problems: list[str]) -> Any:
    """Return ``cls(**raw)`` with every value coerced; unknown keys, bad values and missing keys go to ``problems``.

    A field whose value is bad keeps its default (or a placeholder) so that the other problems can still be found.
    """
    hints = field_types(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in raw.items():
        key = str(key)
        if key not in fields:
            problems.append(f"{prefix}{key}: unknown key{_unknown_key_hint(key, prefix, list(fields))}")
            continue
        annotation = hints[key]
        if dataclasses.is_dataclass(annotation):
            if not isinstance(value, Mapping):
                problems.append(f"{prefix}{key}: expected a mapping of {prefix}{key}.* keys, got {value!r}")
                continue
            kwargs[key] = _build_section(annotation, value, f"{prefix}{key}.", problems)
            continue
        try:
            kwargs[key] = _coerce(value, annotation)
        except _Invalid as err:
            problems.append(f"{prefix}{key}={value!r}: {err}")
    for name, f in fields.items():
        if name not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            if name not in raw:
                problems.append(f"{prefix}{name} is required ({type_name(hints[name])})")
            kwargs[name] = _placeholder(hints[name])
    return cls(**kwargs)


def _placeholder(annotation: Any) -> Any:
    return {int: 1, float: 1.0, bool: False, str: ""}.get(annotation)


def _unknown_key_hint(key: str, prefix: str, known: Sequence[str]) -> str:
    # The right key in the wrong section (train.lr → optim.lr) is a common slip.
    owners = [section for section, cls in SECTIONS.items() if key in {f.name for f in dataclasses.fields(cls)}]
    if owners:
        return f" (did you mean {owners[0]}.{key}?)"
    match = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
    if match:
        return f" (did you mean {prefix}{match[0]}?)"
    return f"; known keys: {', '.join(known)}"

"""What a model card reports about a run, gathered from files: the recipe, config, weights, eval.json, TensorBoard.

The run folder wins over the copies in the release; without a run folder the release's copies are read.
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from hf_gpt2.hub.curves import Curves, event_dirs, read_curves

logger = logging.getLogger(__name__)

RECIPE = "recipe.yaml"
EVAL = "eval.json"
EVENTS_DIR = "runs"
_SUMMARY_KEYS = {  # eval.json keys that describe the run, not a metric
    "tokens_seen",
    "tokens",
    "wall_time_s",
    "train_time_s",
    "hardware",
    "device",
    "num_processes",
    "mixed_precision",
    "steps",
    "step",
}


@dataclass(kw_only=True)
class RunSummary:
    """What the card says about a run, gathered from the release and the run folder."""

    recipe: dict[str, Any] = field(default_factory=dict)
    recipe_text: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    num_parameters: int | None = None
    scalars: dict[str, float] = field(default_factory=dict)
    tasks: dict[str, dict[str, float]] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)
    curves: Curves = field(default_factory=Curves)

    def section(self, name: str) -> dict[str, Any]:
        value = self.recipe.get(name)
        return value if isinstance(value, dict) else {}


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, json.JSONDecodeError) as err:
        logger.warning("ignoring unreadable %s (%s)", path, err)
        return {}
    return data if isinstance(data, dict) else {}


def _first_existing(*paths: Path | None) -> Path | None:
    return next((p for p in paths if p is not None and p.is_file()), None)


def split_eval_results(results: dict[str, Any]) -> tuple[dict[str, float], dict[str, dict[str, float]], dict]:
    """Split an ``eval.json`` dict into (scalar metrics such as val_loss, per-task results, run facts).

    Task results are ``{task: {metric: value, "n": count}}`` at the top level or under ``"tasks"``.
    """
    scalars, tasks, facts = {}, {}, {}
    nested = results.get("tasks") if isinstance(results.get("tasks"), dict) else {}
    for key, value in {**results, **nested}.items():
        if key == "tasks" and value is nested:
            continue
        if key in _SUMMARY_KEYS:
            facts[key] = value
        elif isinstance(value, dict):
            tasks[key] = {k: v for k, v in value.items() if isinstance(v, int | float) and not isinstance(v, bool)}
        elif isinstance(value, int | float) and not isinstance(value, bool):
            scalars[key] = float(value)
    return scalars, tasks, facts


def _count_parameters(release_dir: Path) -> int | None:
    files = sorted(release_dir.glob("*.safetensors"))
    if not files:
        return None
    from safetensors import safe_open

    total = 0
    for path in files:
        with safe_open(str(path), framework="np") as f:
            for key in f.keys():
                total += math.prod(f.get_slice(key).get_shape())
    return total


def _latest_train_state(run_dir: Path | None) -> dict[str, Any]:
    """The newest checkpoint's train_state.json (step, tokens_seen, num_processes), or {}."""
    if run_dir is None:
        return {}
    from hf_gpt2.training.checkpointing import TRAIN_STATE, latest_checkpoint

    checkpoint = latest_checkpoint(run_dir / "checkpoints")
    return _read_json(checkpoint / TRAIN_STATE) if checkpoint is not None else {}


def gather_summary(
    release_dir: str | os.PathLike, run_dir: str | os.PathLike | None = None, *, eval_results: dict | None = None
) -> RunSummary:
    """Collect what the card reports; the run folder wins over copies already in the release.

    Args:
        release_dir: the release (``save_pretrained`` folder).
        run_dir: its run folder (``recipe.yaml``, ``eval.json``, ``tb/``, ``checkpoints/``), if there is one.
        eval_results: results to report instead of ``eval.json`` (same layout).
    """
    release = Path(release_dir)
    run = Path(run_dir) if run_dir is not None else None
    summary = RunSummary()
    recipe_path = _first_existing(run / RECIPE if run else None, release / RECIPE)
    if recipe_path is not None:
        summary.recipe_text = recipe_path.read_text(encoding="utf-8")
        loaded = yaml.safe_load(summary.recipe_text)
        summary.recipe = loaded if isinstance(loaded, dict) else {}
    summary.config = _read_json(release / "config.json")
    summary.num_parameters = _count_parameters(release)
    if eval_results is None:
        eval_path = _first_existing(run / EVAL if run else None, release / EVAL)
        eval_results = _read_json(eval_path) if eval_path else {}
    summary.scalars, summary.tasks, facts = split_eval_results(eval_results)
    summary.curves = read_curves(run / "tb" if run and event_dirs(run / "tb") else release / EVENTS_DIR)
    summary.facts = _facts(summary, facts, _latest_train_state(run))
    return summary


def _facts(summary: RunSummary, eval_facts: dict, train_state: dict) -> dict[str, Any]:
    train, data = summary.section("train"), summary.section("data")
    facts: dict[str, Any] = {}
    facts["steps"] = (
        eval_facts.get("steps")
        or eval_facts.get("step")
        or train_state.get("step")
        or summary.curves.last_step
        or train.get("max_steps")
    )
    tokens = (
        eval_facts.get("tokens_seen")
        or eval_facts.get("tokens")
        or train_state.get("tokens_seen")
        or train_state.get("tokens")
    )
    if tokens is None:
        token_tags = [t for t in summary.curves.series if t.lower().endswith("tokens_seen")]
        tokens = summary.curves.final(token_tags[0]) if token_tags else None
    if tokens is None and train.get("global_batch_tokens") and facts["steps"]:
        tokens = int(train["global_batch_tokens"]) * int(facts["steps"])
    facts["tokens_seen"] = tokens
    facts["wall_time_s"] = (
        eval_facts.get("wall_time_s") or eval_facts.get("train_time_s") or summary.curves.wall_time_s
    )
    facts["hardware"] = eval_facts.get("hardware") or eval_facts.get("device")
    facts["num_processes"] = eval_facts.get("num_processes") or train_state.get("num_processes")
    facts["mixed_precision"] = eval_facts.get("mixed_precision")
    facts["block_size"] = data.get("block_size")
    facts["tokens_per_s"] = _median(summary.curves, "perf/tokens_per_s")
    facts["mfu"] = _median(summary.curves, "perf/mfu")
    train_tags = [t for t in summary.curves.loss_tags() if t.lower().startswith("train")]
    val_tags = [t for t in summary.curves.loss_tags() if "val" in t.lower() or "eval" in t.lower()]
    facts["final_train_loss"] = summary.curves.final(train_tags[0]) if train_tags else None
    val_loss = summary.scalars.get("val_loss")
    facts["final_val_loss"] = (
        val_loss if val_loss is not None else (summary.curves.final(val_tags[0]) if val_tags else None)
    )
    return facts


def _median(curves: Curves, tag: str) -> float | None:
    """Median of a logged scalar, skipping the first point (compilation and warm-up)."""
    values = sorted(value for _, value in curves.series.get(tag, [])[1:])
    return values[len(values) // 2] if values else None

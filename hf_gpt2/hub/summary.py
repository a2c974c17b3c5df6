"""What a model card reports about a run, gathered from files: the recipe, config, weights, eval.json, TensorBoard.

The run folder wins over the copies in the release; without a run folder the release's copies are read. ``eval.json``
is read as an :class:`~hf_gpt2.eval_report.EvalReport` and the newest checkpoint's ``train_state.json`` as a
:class:`~hf_gpt2.training.state.TrainState`; a fact missing from both comes from the TensorBoard curves or the recipe.
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
from safetensors import safe_open

from hf_gpt2.errors import CheckpointError
from hf_gpt2.eval_report import EVAL_JSON, EvalReport, EvalReportError
from hf_gpt2.hub.curves import Curves, event_dirs, read_curves
from hf_gpt2.training.state import TRAIN_STATE, TrainState, latest_checkpoint

logger = logging.getLogger(__name__)

RECIPE = "recipe.yaml"
EVAL = EVAL_JSON
EVENTS_DIR = "runs"


@dataclass(kw_only=True)
class RunSummary:
    """What the card says about a run, gathered from the release and the run folder."""

    recipe: dict[str, Any] = field(default_factory=dict)
    recipe_text: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    num_parameters: int | None = None
    report: EvalReport = field(default_factory=EvalReport)
    """The run's ``eval.json``: validation loss, counters and benchmark results."""
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


def _count_parameters(release_dir: Path) -> int | None:
    files = sorted(release_dir.glob("*.safetensors"))
    if not files:
        return None
    total = 0
    for path in files:
        with safe_open(str(path), framework="np") as f:
            for key in f.keys():
                total += math.prod(f.get_slice(key).get_shape())
    return total


def _latest_train_state(run_dir: Path | None) -> TrainState | None:
    """The newest checkpoint's train state (step, tokens seen, processes), or None."""
    checkpoint = latest_checkpoint(run_dir / "checkpoints") if run_dir is not None else None
    if checkpoint is None or not (checkpoint / TRAIN_STATE).is_file():
        return None
    try:
        return TrainState.read(checkpoint)
    except CheckpointError as err:
        logger.warning("ignoring %s (%s)", checkpoint / TRAIN_STATE, err)
        return None


def _read_report(path: Path | None) -> EvalReport:
    if path is None:
        return EvalReport()
    try:
        return EvalReport.read(path)
    except EvalReportError as err:
        logger.warning("ignoring unreadable %s (%s)", path, err)
        return EvalReport()


def gather_summary(
    release_dir: str | os.PathLike, run_dir: str | os.PathLike | None = None, *, report: EvalReport | None = None
) -> RunSummary:
    """Collect what the card reports; the run folder wins over copies already in the release.

    Args:
        release_dir: the release (``save_pretrained`` folder).
        run_dir: its run folder (``recipe.yaml``, ``eval.json``, ``tb/``, ``checkpoints/``), if there is one.
        report: results to report instead of ``eval.json``.
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
    if report is None:
        report = _read_report(_first_existing(run / EVAL if run else None, release / EVAL))
    summary.report = report
    summary.curves = read_curves(run / "tb" if run and event_dirs(run / "tb") else release / EVENTS_DIR)
    summary.facts = _facts(summary, _latest_train_state(run))
    return summary


def _facts(summary: RunSummary, train_state: TrainState | None) -> dict[str, Any]:
    """The card's facts: eval.json first, then the newest checkpoint, then the curves and the recipe."""
    train, data, report, curves = summary.section("train"), summary.section("data"), summary.report, summary.curves
    state = train_state or TrainState(step=0)
    facts: dict[str, Any] = {}
    facts["steps"] = report.step or state.step or curves.last_step or train.get("max_steps")
    tokens = report.tokens_seen or state.tokens_seen
    if tokens is None:
        token_tags = [t for t in curves.series if t.lower().endswith("tokens_seen")]
        tokens = curves.final(token_tags[0]) if token_tags else None
    if tokens is None and train.get("global_batch_tokens") and facts["steps"]:
        tokens = int(train["global_batch_tokens"]) * int(facts["steps"])
    facts["tokens_seen"] = tokens
    facts["wall_time_s"] = report.wall_time_s or report.train_time_s or curves.wall_time_s
    facts["hardware"] = report.device
    facts["num_processes"] = report.num_processes or (train_state.num_processes if train_state else None)
    facts["mixed_precision"] = report.mixed_precision
    facts["block_size"] = data.get("block_size")
    facts["tokens_per_s"] = _median(curves, "perf/tokens_per_s")
    facts["mfu"] = _median(curves, "perf/mfu")
    train_tags = [t for t in curves.loss_tags() if t.lower().startswith("train")]
    val_tags = [t for t in curves.loss_tags() if "val" in t.lower() or "eval" in t.lower()]
    val_tags = sorted(val_tags, key=lambda t: (t != "val/loss", t.startswith(("eval_first", "eval_all"))))
    facts["final_train_loss"] = curves.final(train_tags[0]) if train_tags else None
    val_loss = report.val_loss
    facts["final_val_loss"] = val_loss if val_loss is not None else (curves.final(val_tags[0]) if val_tags else None)
    bpb = report.val_bits_per_byte
    facts["final_val_bpb"] = bpb if bpb is not None else curves.final("val/bpb")
    return facts


def _median(curves: Curves, tag: str) -> float | None:
    """Median of a logged scalar, skipping the first point (compilation and warm-up)."""
    values = sorted(value for _, value in curves.series.get(tag, [])[1:])
    return values[len(values) // 2] if values else None

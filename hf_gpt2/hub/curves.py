"""Training curves from TensorBoard events: read every scalar, and draw the loss curves as a PNG; and the
benchmarks evaluated during training (eval.json's ``history``) as panels beside GPT-2 124M's published numbers.

A run logs into ``tb/`` (possibly in subfolders, as accelerate's tracker does); a resumed run appends more event
files, so a step logged twice keeps its newest value.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from hf_gpt2.eval_report import EvalReport
from hf_gpt2.hub.references import find_reference, headline_metrics

logger = logging.getLogger(__name__)

EVENTS_GLOB = "events.out.tfevents.*"


@dataclass(kw_only=True)
class Curves:
    """Every scalar of a run: ``series[tag] = [(step, value), ...]`` sorted by step, plus the wall-clock span."""

    series: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    first_wall_time: float | None = None
    last_wall_time: float | None = None

    @property
    def wall_time_s(self) -> float | None:
        """Seconds between the first and the last logged event (includes any pause between a stop and a resume)."""
        if self.first_wall_time is None or self.last_wall_time is None:
            return None
        return self.last_wall_time - self.first_wall_time

    @property
    def last_step(self) -> int | None:
        """The largest step of any scalar."""
        steps = [points[-1][0] for points in self.series.values() if points]
        return max(steps) if steps else None

    def loss_tags(self) -> list[str]:
        """Scalar tags that hold a loss (their name contains ``loss``), train curves first."""
        tags = [t for t in self.series if "loss" in t.lower()]
        return sorted(tags, key=lambda t: (not t.lower().startswith("train"), t))

    def final(self, tag: str) -> float | None:
        """The value at the last step of ``tag``, or None."""
        points = self.series.get(tag)
        return points[-1][1] if points else None


def event_dirs(root: Path) -> list[Path]:
    """Folders under ``root`` (itself included) that hold TensorBoard event files."""
    if not root.is_dir():
        return []
    return sorted({p.parent for p in root.rglob(EVENTS_GLOB) if p.is_file()})


def read_curves(root: str | os.PathLike | None) -> Curves:
    """Read every scalar logged under ``root`` (an empty :class:`Curves` when there are no events)."""
    curves = Curves()
    if root is None:
        return curves
    root = Path(root)
    by_tag: dict[str, list[tuple[float, int, float]]] = {}
    for folder in event_dirs(root):
        for tag, events in _scalars_in(folder).items():
            by_tag.setdefault(tag, []).extend(events)
    walls = [wall for events in by_tag.values() for wall, _, _ in events]
    if walls:
        curves.first_wall_time, curves.last_wall_time = min(walls), max(walls)
    for tag, events in by_tag.items():
        latest: dict[int, float] = {}
        for _, step, value in sorted(events):  # by wall time, so the newest value of a repeated step wins
            latest[step] = value
        curves.series[tag] = sorted(latest.items())
    return curves


def _scalars_in(folder: Path) -> dict[str, list[tuple[float, int, float]]]:
    logging.getLogger("tensorboard").setLevel(logging.WARNING)  # its INFO lines ("No path found after ...") are noise
    accumulator = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    try:
        accumulator.Reload()
    except Exception as err:  # a truncated event file (a run killed mid-write) must not stop the card
        logger.warning("could not read all TensorBoard events in %s: %s", folder, err)
    out = {}
    for tag in accumulator.Tags().get("scalars", []):
        out[tag] = [(e.wall_time, int(e.step), float(e.value)) for e in accumulator.Scalars(tag)]
    return out


def plot_losses(curves: Curves, path: str | os.PathLike, *, title: str | None = None) -> Path | None:
    """Draw every loss curve against the step and save a PNG; None (nothing written) when no loss was logged."""
    tags = curves.loss_tags()
    if not tags:
        return None
    figure = Figure(figsize=(7.5, 4.2), dpi=120)  # no pyplot: no global backend, safe in any thread
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for tag in tags:
        steps, values = zip(*curves.series[tag], strict=True)
        style = "-" if len(steps) > 20 else "-o"
        axes.plot(steps, values, style, label=tag, linewidth=1.4, markersize=3)
    axes.set_xlabel("optimizer step")
    axes.set_ylabel("cross-entropy loss (nats/token)")
    axes.set_title(title or "loss")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    return path


# -- benchmarks during training ----------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class EvalPanel:
    """One task and metric evaluated during training: its points, the score after training, GPT-2 124M's numbers."""

    task: str
    metric: str
    limit: int | None
    """The points scored the task's first ``limit`` items (None: all)."""
    points: list[tuple[int, float]]
    """``(step, value)``, oldest first."""
    final: tuple[int, float, int] | None = None
    """``(step, value, items)`` of the evaluation after training (eval.json's task entry), when there is one."""
    references: list[tuple[str, float]] = field(default_factory=list)
    """``(label, value)``: GPT-2 124M on the whole task (the paper's, lm-evaluation-harness's)."""

    @property
    def title(self) -> str:
        """The panel's title, which says the points are on a slice of the task."""
        items = f"first {self.limit} items" if self.limit is not None else "all items"
        return f"{self.task} {self.metric} during training ({items})"


def eval_panels(report: EvalReport) -> list[EvalPanel]:
    """The panels of ``report.history``: one per task and headline metric, in the order first evaluated."""
    by_panel: dict[tuple[str, str, int | None], list[tuple[int, float]]] = {}
    for point in report.history:
        for metric in headline_metrics(point.task, point.metrics):
            value = point.metrics[metric]
            if math.isfinite(value):
                by_panel.setdefault((point.task, metric, point.limit), []).append((point.step, value))
    panels = []
    for (task, metric, limit), points in by_panel.items():
        after = report.tasks.get(task, {})
        final = None
        if metric in after and report.step is not None:
            final = (report.step, after[metric], int(after.get("n", 0)))
        ref = find_reference(task, metric)
        references = []
        if ref is not None and ref.paper is not None:
            references.append(("GPT-2 124M, paper (whole task)", ref.paper))
        if ref is not None and ref.lm_eval is not None:
            references.append(("GPT-2 124M, lm-eval (whole task)", ref.lm_eval))
        panels.append(EvalPanel(task=task, metric=metric, limit=limit, points=sorted(points), final=final,
                                references=references))  # fmt: skip
    return panels


def plot_eval_panels(panels: list[EvalPanel], path: str | os.PathLike) -> Path | None:
    """Draw each panel against the step, GPT-2 124M's numbers as labelled horizontal lines and the score after
    training as a marker; save a PNG. None (nothing written) when there are no panels."""
    if not panels:
        return None
    columns = min(2, len(panels))
    rows = math.ceil(len(panels) / columns)
    figure = Figure(figsize=(6.0 * columns, 3.6 * rows), dpi=110)
    FigureCanvasAgg(figure)
    for i, panel in enumerate(panels):
        axes = figure.add_subplot(rows, columns, i + 1)
        steps, values = zip(*panel.points, strict=True)
        axes.plot(steps, values, "-o", label="this model (slice)", linewidth=1.4, markersize=3)
        if panel.final is not None:
            step, value, n = panel.final
            axes.plot([step], [value], "*", markersize=11, label=f"this model after training ({n} items)")
        for (label, value), style in zip(panel.references, ("--", ":"), strict=False):
            axes.axhline(value, linestyle=style, color="gray", linewidth=1.2, label=f"{label}: {value:.4g}")
        axes.set_title(panel.title, fontsize=9)
        axes.set_xlabel("optimizer step")
        axes.set_ylabel(panel.metric)
        axes.grid(alpha=0.3)
        axes.legend(fontsize=7)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    return path

"""Training curves from TensorBoard events: read every scalar, and draw the loss curves as a PNG.

A run logs into ``tb/`` (possibly in subfolders, as accelerate's tracker does); a resumed run appends more event
files, so a step logged twice keeps its newest value.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

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

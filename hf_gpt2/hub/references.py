"""GPT-2 124M reference numbers for the card's evaluation table, and the Hub dataset behind each task.

``hf_gpt2.evaluation`` owns the numbers (``PAPER_124M``, ``LM_EVAL_GPT2``), the headline metrics and the tasks' Hub
sources; the card uses them, so the card and ``hf-gpt2 eval`` print the same table.
"""

from __future__ import annotations

from dataclasses import dataclass

from hf_gpt2.evaluation import LM_EVAL_GPT2, PAPER_124M, TASKS
from hf_gpt2.evaluation.runner import HEADLINE_METRICS

BOOKKEEPING = frozenset({"n", "tokens", "context", "stride"})
"""Result keys that are counts or settings, not metrics."""

_VAL_LOSS_124M = {"openwebtext": 3.12, "fineweb": 3.28}
"""Validation loss of GPT-2 124M: OpenWebText (nanoGPT, OpenAI weights), FineWeb (the speedrun target)."""


@dataclass(frozen=True)
class Reference:
    """GPT-2 124M on one task and metric: the paper's number and lm-evaluation-harness's on the same weights."""

    paper: float | None = None
    lm_eval: float | None = None


@dataclass(frozen=True)
class TaskDataset:
    """Where a task's data lives on the Hub (for ``model-index``)."""

    id: str
    name: str
    config: str | None = None
    split: str | None = None


def find_reference(task: str, metric: str) -> Reference | None:
    """GPT-2 124M's numbers for ``task``/``metric`` (None when neither table has one)."""
    paper = PAPER_124M.get(task, {}).get(metric)
    lm_eval = LM_EVAL_GPT2.get(task, {}).get(metric)
    return None if paper is None and lm_eval is None else Reference(paper, lm_eval)


def val_loss_reference(data_source: str) -> float | None:
    """GPT-2 124M's validation loss on the recipe's training data, when it is OpenWebText or FineWeb."""
    source = data_source.lower()
    return next((loss for name, loss in _VAL_LOSS_124M.items() if name in source), None)


def headline_metrics(task: str, metrics: dict[str, float]) -> list[str]:
    """The metrics of ``task`` worth a table row, in the evaluation package's order."""
    names = HEADLINE_METRICS.get(task) or [k for k in metrics if k not in BOOKKEEPING]
    return [name for name in names if name in metrics]


def task_dataset(task: str) -> TaskDataset:
    """The Hub dataset of a benchmark task (the task's own name when it has none, e.g. enwik8 from a local file)."""
    registered = TASKS.get(task)
    hub = getattr(registered, "hub", None)
    name = getattr(registered, "summary", None) or task
    if hub is not None:
        return TaskDataset(hub.repo, name, hub.config, hub.split)
    return TaskDataset(task, name)

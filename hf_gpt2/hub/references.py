"""GPT-2 124M reference numbers for the card's evaluation table, and the Hub dataset behind each task.

``hf_gpt2.evaluation`` owns the numbers (``PAPER_124M``, ``LM_EVAL_GPT2``), the headline metrics and the tasks' Hub
sources; the card uses them, so the card and ``hf-gpt2 eval`` print the same table. A copy of the numbers
(DESIGN.md §5, accuracies as fractions) is the fallback when that package cannot be imported, so a card can always
be written.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cache

logger = logging.getLogger(__name__)

BOOKKEEPING = frozenset({"n", "tokens", "context", "stride"})
"""Result keys that are counts or settings, not metrics."""

_PAPER_124M = {
    "lambada_openai_paper": {"ppl": 35.13, "acc": 0.4599},
    "cbt_cn": {"acc": 0.8765},
    "cbt_ne": {"acc": 0.834},
    "wikitext2": {"word_perplexity": 29.41},
    "wikitext103": {"word_perplexity": 37.50},
    "enwik8": {"bits_per_byte": 1.16},
    "text8": {"bits_per_char": 1.17},
}
_LM_EVAL_GPT2 = {
    "lambada_openai": {"acc": 0.3256, "ppl": 40.06},
    "hellaswag": {"acc": 0.2892, "acc_norm": 0.3114},
}
_VAL_LOSS_124M = {"openwebtext": 3.12, "fineweb": 3.28}
"""Validation loss of GPT-2 124M: OpenWebText (nanoGPT, OpenAI weights), FineWeb (the speedrun target)."""
_DATASETS = {
    "lambada_openai": ("EleutherAI/lambada_openai", "default", "test"),
    "lambada_openai_paper": ("EleutherAI/lambada_openai", "default", "test"),
    "cbt_cn": ("cam-cst/cbt", "CN", "test"),
    "cbt_ne": ("cam-cst/cbt", "NE", "test"),
    "wikitext2": ("Salesforce/wikitext", "wikitext-2-raw-v1", "test"),
    "wikitext103": ("Salesforce/wikitext", "wikitext-103-raw-v1", "test"),
    "hellaswag": ("Rowan/hellaswag", None, "validation"),
}


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


@cache
def _evaluation() -> dict:
    try:
        from hf_gpt2.evaluation import LM_EVAL_GPT2, PAPER_124M, TASKS
        from hf_gpt2.evaluation.runner import HEADLINE_METRICS
    except Exception as err:  # the card must not fail because the benchmarks cannot be imported
        logger.warning("hf_gpt2.evaluation unavailable (%s); using the card's copy of GPT-2's numbers", err)
        return {"paper": _PAPER_124M, "lm_eval": _LM_EVAL_GPT2, "tasks": {}, "headline": {}}
    return {"paper": PAPER_124M, "lm_eval": LM_EVAL_GPT2, "tasks": TASKS, "headline": HEADLINE_METRICS}


def find_reference(task: str, metric: str) -> Reference | None:
    """GPT-2 124M's numbers for ``task``/``metric`` (None when neither table has one)."""
    tables = _evaluation()
    paper = tables["paper"].get(task, {}).get(metric)
    lm_eval = tables["lm_eval"].get(task, {}).get(metric)
    return None if paper is None and lm_eval is None else Reference(paper, lm_eval)


def val_loss_reference(data_source: str) -> float | None:
    """GPT-2 124M's validation loss on the recipe's training data, when it is OpenWebText or FineWeb."""
    source = data_source.lower()
    return next((loss for name, loss in _VAL_LOSS_124M.items() if name in source), None)


def headline_metrics(task: str, metrics: dict[str, float]) -> list[str]:
    """The metrics of ``task`` worth a table row, in the evaluation package's order."""
    names = _evaluation()["headline"].get(task) or [k for k in metrics if k not in BOOKKEEPING]
    return [name for name in names if name in metrics]


def task_dataset(task: str) -> TaskDataset:
    """The Hub dataset of a benchmark task (the task's own name when it has none, e.g. enwik8 from a local file)."""
    registered = _evaluation()["tasks"].get(task)
    hub = getattr(registered, "hub", None)
    name = getattr(registered, "summary", None) or task
    if hub is not None and not getattr(hub, "data_files", None):
        return TaskDataset(hub.repo, name, hub.config, hub.split)
    if hub is not None:
        return TaskDataset(hub.repo, name, None, hub.split)
    if task in _DATASETS:
        repo, config, split = _DATASETS[task]
        return TaskDataset(repo, name, config, split)
    return TaskDataset(task, name)

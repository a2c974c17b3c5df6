"""GPT-2 124M reference numbers for the card's evaluation table, and the Hub datasets behind each task.

``hf_gpt2.evaluation`` owns the reference table when it is installed; the copy here (DESIGN.md §5) is what the card
falls back to, so that a card can always be written.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Reference:
    """GPT-2 124M on one task and metric: the paper's number and a common reimplementation's."""

    paper: float | None = None
    reimplementation: float | None = None


@dataclass(frozen=True)
class TaskDataset:
    """Where a task's data lives on the Hub (for ``model-index``)."""

    id: str
    name: str
    config: str | None = None
    split: str | None = None


# GPT-2 paper Table 3 (zero-shot, "117M"); lm-eval / nanoGPT on the same `gpt2` weights. Accuracies in %.
_FALLBACK: dict[str, dict[str, Reference]] = {
    "lambada": {"acc": Reference(45.99, 32.56), "ppl": Reference(35.13, 40.06)},
    "cbtcn": {"acc": Reference(87.65)},
    "cbtne": {"acc": Reference(83.4)},
    "wikitext2": {"ppl": Reference(29.41)},
    "ptb": {"ppl": Reference(65.85)},
    "enwik8": {"bpb": Reference(1.16)},
    "text8": {"bpc": Reference(1.17)},
    "wikitext103": {"ppl": Reference(37.50)},
    "1bw": {"ppl": Reference(75.20)},
    "hellaswag": {"acc": Reference(None, 28.92), "accnorm": Reference(None, 31.14)},
    "openwebtext": {"loss": Reference(None, 3.12)},
    "fineweb": {"loss": Reference(None, 3.28)},
}
_TASK_ALIASES = {
    "lambadaopenai": "lambada",
    "lambadastandard": "lambada",
    "cbt": "cbtcn",
    "wikitext": "wikitext2",
    "wikitext2raw": "wikitext2",
    "penntreebank": "ptb",
    "ptbtextonly": "ptb",
    "lm1b": "1bw",
    "onebillionword": "1bw",
    "billionword": "1bw",
    "owt": "openwebtext",
    "openwebtext10k": "openwebtext",
    "fineweb10b": "fineweb",
    "finewebedu": "fineweb",
}
_METRIC_ALIASES = {
    "accuracy": "acc",
    "perplexity": "ppl",
    "valloss": "loss",
    "bitsperbyte": "bpb",
    "bitspercharacter": "bpc",
    "accuracynorm": "accnorm",
}
_DATASETS = {
    "lambada": TaskDataset("EleutherAI/lambada_openai", "LAMBADA", "default", "test"),
    "cbtcn": TaskDataset("cam-cst/cbt", "Children's Book Test (common nouns)", "CN", "test"),
    "cbtne": TaskDataset("cam-cst/cbt", "Children's Book Test (named entities)", "NE", "test"),
    "wikitext2": TaskDataset("Salesforce/wikitext", "WikiText-2", "wikitext-2-raw-v1", "test"),
    "wikitext103": TaskDataset("Salesforce/wikitext", "WikiText-103", "wikitext-103-raw-v1", "test"),
    "hellaswag": TaskDataset("Rowan/hellaswag", "HellaSwag", None, "validation"),
    "ptb": TaskDataset("ptb_text_only", "Penn Treebank", None, "test"),
}


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _task_key(task: str) -> str:
    key = _key(task.removeprefix("hub:"))
    key = _TASK_ALIASES.get(key, key)
    for known in _FALLBACK:  # e.g. "hub:Skylion007/openwebtext" → "skylion007openwebtext" → openwebtext
        if key not in _FALLBACK and key.endswith(known):
            return known
    return key


def _metric_key(metric: str) -> str:
    key = _key(metric)
    return _METRIC_ALIASES.get(key, key)


def _table_from_evaluation() -> dict[str, dict[str, Reference]] | None:
    """The evaluation package's table, when it exposes one as ``{task: {metric: value}}``."""
    try:
        import hf_gpt2.evaluation as evaluation
    except ImportError:
        return None
    for name in ("GPT2_PAPER_124M", "PAPER_RESULTS", "PAPER_NUMBERS", "REFERENCE_RESULTS"):
        table = getattr(evaluation, name, None)
        if isinstance(table, dict):
            out: dict[str, dict[str, Reference]] = {}
            for task, metrics in table.items():
                if isinstance(metrics, dict):
                    out[_task_key(task)] = {
                        _metric_key(m): Reference(float(v)) for m, v in metrics.items() if isinstance(v, int | float)
                    }
            return out
    return None


def find_reference(task: str, metric: str) -> Reference | None:
    """GPT-2 124M's number for ``task``/``metric``, or None when there is no published one."""
    task_key, metric_key = _task_key(task), _metric_key(metric)
    from_evaluation = _table_from_evaluation() or {}
    paper = from_evaluation.get(task_key, {}).get(metric_key)
    fallback = _FALLBACK.get(task_key, {}).get(metric_key)
    if paper is None:
        return fallback
    return Reference(paper.paper, fallback.reimplementation if fallback else None)


def task_dataset(task: str) -> TaskDataset:
    """The Hub dataset of a benchmark task (the task's own name when it has no Hub dataset)."""
    return _DATASETS.get(_task_key(task), TaskDataset(task, task))

"""Run a list of tasks on one model, and print the results beside GPT-2's reference numbers."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from hf_gpt2.errors import HfGPT2Error
from hf_gpt2.evaluation.base import EvalOptions
from hf_gpt2.evaluation.core import CORE_TASKS
from hf_gpt2.evaluation.references import LM_EVAL_GPT2, OTHER_124M, PAPER_124M
from hf_gpt2.evaluation.registry import TASKS, resolve_tasks
from hf_gpt2.evaluation.scoring import LoglikelihoodScorer

if TYPE_CHECKING:
    from accelerate import Accelerator
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

logger = logging.getLogger(__name__)

# The metrics shown in the table, per task, in order (results hold a few more, e.g. byte_perplexity).
HEADLINE_METRICS: dict[str, tuple[str, ...]] = {
    "lambada_openai": ("acc", "ppl"),
    "lambada_openai_paper": ("acc", "ppl"),
    "cbt_cn": ("acc",),
    "cbt_ne": ("acc",),
    "wikitext2": ("word_perplexity", "token_perplexity", "bits_per_byte"),
    "wikitext103": ("word_perplexity", "token_perplexity", "bits_per_byte"),
    "ptb": ("word_perplexity", "token_perplexity", "bits_per_byte"),
    "lm1b": ("word_perplexity", "token_perplexity"),
    "enwik8": ("bits_per_byte",),
    "text8": ("bits_per_char",),
    "hellaswag": ("acc", "acc_norm"),
    "val_loss": ("loss", "ppl"),
    "core": ("core", *(f"acc_{label}" for label in CORE_TASKS)),
}
_BOOKKEEPING = {"n", "tokens", "context", "stride"}


def run_tasks(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    tasks: str | Iterable[str],
    *,
    data: Mapping[str, str] | None = None,
    limit: int | None = None,
    batch_size: int = 8,
    accelerator: Accelerator | None = None,
    progress: bool = True,
    options: EvalOptions | None = None,
) -> dict[str, dict[str, float]]:
    """Score ``model`` on benchmark tasks and return ``{task: {metric: value, ..., "n": count}}``.

    Args:
        model: a causal LM (hf_gpt2, stock GPT-2, or any ``*ForCausalLM``), on the device to run on; it is put in
            eval mode for the run and restored afterwards.
        tokenizer: its tokenizer.
        tasks: task names and groups (``"gpt2-paper"``, ``"all"``), as a list or a comma-separated string.
        data: task → local path, replacing the task's Hub source (required for enwik8, text8, val_loss).
        limit: score only the first ``limit`` documents/items (windows for enwik8, text8 and val_loss).
        batch_size: requests per forward pass (per process).
        accelerator: split the work across its processes and gather the results (every process returns them all).
        progress: show progress bars on the main process.
        options: rolling-window context/stride and detokenization (:class:`EvalOptions`).

    Raises:
        UnknownTaskError, DataError, ContextLengthError: bad task names, missing or malformed data, or a model whose
            context is too short for a task.
    """
    data = dict(data or {})
    names = resolve_tasks(tasks, data)
    if limit is not None and limit < 1:
        raise HfGPT2Error(f"limit must be >= 1 (or None for everything), got {limit}")
    options = options or EvalOptions()
    scorer = LoglikelihoodScorer(
        model,
        tokenizer,
        batch_size=batch_size,
        accelerator=accelerator,
        progress=progress,
        max_length=options.max_length,
        add_special_tokens=options.add_special_tokens,
        prefix_token_id=options.prefix_token_id,
    )
    was_training = scorer.model.training
    scorer.model.eval()
    results: dict[str, dict[str, float]] = {}
    try:
        for name in names:
            task = TASKS[name]
            if scorer.is_main_process:
                logger.info("%s: %s; data: %s", name, task.summary, task.describe_source(data.get(name)))
            started = time.perf_counter()
            results[name] = task.run(scorer, data.get(name), limit=limit, options=options)
            if scorer.is_main_process:
                shown = {k: round(v, 4) for k, v in results[name].items() if k not in _BOOKKEEPING}
                logger.info("%s: %s (n=%d, %.1f s)", name, shown, results[name]["n"], time.perf_counter() - started)
    finally:
        scorer.model.train(was_training)
    return results


def describe_data(
    tasks: Iterable[str], data: Mapping[str, str] | None = None, options: EvalOptions | None = None
) -> dict[str, str]:
    """``{task: "dataset, split"}`` of what each task scores (for the ``data`` column of :func:`format_table`)."""
    data = dict(data or {})
    return {name: TASKS[name].data_label(data.get(name), options) for name in tasks}


def format_table(
    results: Mapping[str, Mapping[str, float]],
    *,
    title: str | None = None,
    sources: Mapping[str, str] | None = None,
) -> str:
    """A plain-text table of results beside GPT-2 124M's numbers: the paper's, lm-evaluation-harness's on the same
    ``gpt2`` weights, and other published reproductions (with their source).

    Accuracies print in %; a dash means there is no reference for that task and metric. With ``sources``
    (:func:`describe_data`), a last column names the data and split each task scored.
    """
    header = ("task", "metric", "value", "GPT-2 paper 124M", "lm-eval gpt2", "other 124M (source)", "n")
    rows = [header]
    for task, metrics in results.items():
        names = HEADLINE_METRICS.get(task) or tuple(k for k in metrics if k not in _BOOKKEEPING)
        for metric in names:
            if metric not in metrics:
                continue
            other = OTHER_124M.get(task, {}).get(metric)
            rows.append(
                (
                    task,
                    f"{metric} (%)" if _is_accuracy(metric) else metric,
                    _format_value(metric, metrics[metric]),
                    _format_value(metric, PAPER_124M.get(task, {}).get(metric)),
                    _format_value(metric, LM_EVAL_GPT2.get(task, {}).get(metric)),
                    f"{_format_value(metric, other.value)} ({other.source})" if other else "-",
                    f"{int(metrics.get('n', 0))}",
                )
            )
    if sources is not None:
        rows = [(*row, "data" if i == 0 else sources.get(row[0], "-")) for i, row in enumerate(rows)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [title] if title else []
    for i, row in enumerate(rows):
        left = [row[0].ljust(widths[0]), row[1].ljust(widths[1])]
        right = [c.rjust(w) for c, w in zip(row[2:7], widths[2:7], strict=True)]
        lines.append("  ".join(left + right + [c.ljust(w) for c, w in zip(row[7:], widths[7:], strict=True)]).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _is_accuracy(metric: str) -> bool:
    return metric.startswith("acc")


def _format_value(metric: str, value: float | None) -> str:
    if value is None:
        return "-"
    if not math.isfinite(value):
        return str(value)
    if _is_accuracy(metric):
        return f"{100 * value:.2f}"
    if abs(value) >= 1e6:
        return f"{value:.4g}"
    return f"{value:.4f}" if abs(value) < 10 else f"{value:.2f}"

"""Benchmarks: the GPT-2 paper's zero-shot suite, HellaSwag and validation loss, for any causal LM.

>>> from hf_gpt2.evaluation import load_model_and_tokenizer, run_tasks, format_table
>>> model, tokenizer = load_model_and_tokenizer("openai-community/gpt2")
>>> results = run_tasks(model, tokenizer, ["lambada_openai", "hellaswag"], limit=100)
>>> print(format_table(results))

One module per kind of task (:mod:`.lambada`, :mod:`.wikitext`, :mod:`.sentence_level` for PTB and 1BW, :mod:`.cbt`,
:mod:`.hellaswag`, :mod:`.character_level`, :mod:`.val_loss`, :mod:`.core` for the CORE score) builds log-likelihood
requests; :mod:`.scoring` runs
them batched (and under Accelerate); :mod:`.metrics` aggregates them with ``evaluate.Metric`` subclasses;
:mod:`.references` holds GPT-2's numbers.
"""

from __future__ import annotations

from hf_gpt2.evaluation.base import EvalOptions, Task
from hf_gpt2.evaluation.errors import ContextLengthError, UnknownTaskError
from hf_gpt2.evaluation.models import load_model_and_tokenizer
from hf_gpt2.evaluation.references import LM_EVAL_GPT2, OTHER_124M, PAPER_124M
from hf_gpt2.evaluation.registry import TASK_GROUPS, TASKS, resolve_tasks
from hf_gpt2.evaluation.runner import describe_data, format_table, run_tasks
from hf_gpt2.evaluation.scoring import LoglikelihoodRequest, LoglikelihoodResult, LoglikelihoodScorer, rolling_windows

__all__ = [
    "LM_EVAL_GPT2",
    "OTHER_124M",
    "PAPER_124M",
    "TASKS",
    "TASK_GROUPS",
    "ContextLengthError",
    "EvalOptions",
    "LoglikelihoodRequest",
    "LoglikelihoodResult",
    "LoglikelihoodScorer",
    "Task",
    "UnknownTaskError",
    "describe_data",
    "format_table",
    "load_model_and_tokenizer",
    "resolve_tasks",
    "rolling_windows",
    "run_tasks",
]

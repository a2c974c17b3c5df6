"""What every benchmark task shares: the task interface, the per-run options and rolling document scoring."""

from __future__ import annotations

import abc
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from hf_gpt2.evaluation.errors import ContextLengthError
from hf_gpt2.evaluation.metrics import RollingPerplexityMetric
from hf_gpt2.evaluation.scoring import LoglikelihoodScorer, rolling_windows
from hf_gpt2.evaluation.sources import HubSource

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class EvalOptions:
    """Settings shared by the tasks of one run."""

    context: int | None = None
    """Rolling tasks (wikitext, enwik8, text8, val_loss): tokens the model sees per window; None = its context."""
    stride: int | None = None
    """Rolling tasks: new tokens predicted per window after the first; None = ``context`` (disjoint windows)."""
    detokenize: bool = True
    """Undo the tokenization of WikiText, CBT, PTB and 1BW (``" @-@ "`` → ``"-"``, ``" ,"`` → ``","``) before
    scoring."""


class Task(abc.ABC):
    """A benchmark: reads its documents, builds log-likelihood requests, and aggregates them with its metric."""

    name: ClassVar[str]
    summary: ClassVar[str]
    hub: ClassVar[HubSource | None] = None
    """The default data source; None means the task runs only on data given with ``--data``."""

    @abc.abstractmethod
    def run(
        self, scorer: LoglikelihoodScorer, data: str | None, *, limit: int | None, options: EvalOptions
    ) -> dict[str, float]:
        """Score the task and return its metrics plus ``"n"`` (the number of documents or items scored)."""

    def describe_source(self, data: str | None) -> str:
        """Where the documents come from, for logs and the results JSON."""
        if data is not None:
            return data
        return self.hub.describe() if self.hub is not None else "(none: pass --data)"


def take(rows: Sequence[Any], limit: int | None) -> list[Any]:
    """The first ``limit`` rows (all of them when limit is None)."""
    return list(rows if limit is None else rows[:limit])


def window_settings(scorer: LoglikelihoodScorer, options: EvalOptions, task: str) -> tuple[int, int]:
    """The (context, stride) of a rolling task, checked against the model's context."""
    context = options.context or scorer.max_length
    if context > scorer.max_length:
        raise ContextLengthError(
            f"{task}: a context of {context} tokens was asked for, but the model's context is {scorer.max_length} "
            f"tokens; use --context {scorer.max_length} or less"
        )
    stride = options.stride or context
    if not 1 <= stride <= context:
        raise ContextLengthError(f"{task}: the stride must be between 1 and the context ({context}), got {stride}")
    return context, stride


def score_documents(
    scorer: LoglikelihoodScorer,
    documents: Sequence[Sequence[int]],
    *,
    context: int,
    stride: int,
    prefix_token: int | None,
    desc: str,
) -> list[tuple[float, int]]:
    """Rolling log-likelihood of each tokenized document: (summed log-prob in nats, number of predicted tokens)."""
    requests, owners = [], []
    for doc_index, tokens in enumerate(documents):
        windows = rolling_windows(tokens, context=context, stride=stride, prefix_token=prefix_token)
        requests.extend(windows)
        owners.extend([doc_index] * len(windows))
    totals = [[0.0, 0] for _ in documents]
    for owner, result in zip(owners, scorer.loglikelihood(requests, desc=desc), strict=True):
        totals[owner][0] += result.log_likelihood
        totals[owner][1] += result.num_tokens
    return [(ll, n) for ll, n in totals]


def rolling_perplexity(
    scorer: LoglikelihoodScorer,
    texts: Sequence[str],
    *,
    num_words: Sequence[int],
    num_bytes: Sequence[int],
    context: int,
    stride: int,
    desc: str,
) -> dict[str, float]:
    """Score each text as a document (EOS prefix, rolling windows) and aggregate with :class:`RollingPerplexityMetric`.

    ``num_words`` and ``num_bytes`` are each document's counts in the original text (the task decides what a word
    is); ``context`` and ``stride`` come from :func:`window_settings` and are reported with the metrics.
    """
    scored = score_documents(
        scorer, scorer.encode_batch(texts), context=context, stride=stride, prefix_token=scorer.eot_token_id, desc=desc
    )
    metrics = RollingPerplexityMetric().compute(
        log_likelihood=[ll for ll, _ in scored],
        num_tokens=[n for _, n in scored],
        num_words=list(num_words),
        num_bytes=list(num_bytes),
    )
    return {**metrics, "context": float(context), "stride": float(stride)}

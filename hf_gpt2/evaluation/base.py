"""What every benchmark task shares: the task interface, the per-run options and rolling document scoring."""

from __future__ import annotations

import abc
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from hf_gpt2.errors import HfGPT2Error
from hf_gpt2.evaluation.errors import ContextLengthError
from hf_gpt2.evaluation.metrics import RollingPerplexityMetric
from hf_gpt2.evaluation.scoring import LoglikelihoodScorer, rolling_windows
from hf_gpt2.evaluation.sources import HubSource

logger = logging.getLogger(__name__)


CBT_SPLITS = ("validation", "test")
STANDARD_TEST_BYTES = 5_000_000
"""enwik8/text8: the standard test split is the last 5,000,000 bytes of the 100,000,000-byte files."""


@dataclass(frozen=True, slots=True, kw_only=True)
class EvalOptions:
    """Settings shared by the tasks of one run. Every default is lm-evaluation-harness's choice where it has a task,
    else the common protocol named in the field's note; each field is a command-line switch of ``hf-gpt2 eval``."""

    context: int | None = None
    """Rolling tasks (wikitext, ptb, lm1b, enwik8, text8, val_loss): tokens the model sees per window; None = the
    scoring length (``max_length``)."""
    stride: int | None = None
    """Rolling tasks: new tokens predicted per window after the first. None = the task's default: ``context``
    (disjoint windows, lm-evaluation-harness's) for wikitext, ptb, lm1b and val_loss; ``context // 2`` for enwik8 and
    text8 (overlapping windows, as the common reproductions of their bits-per-byte numbers use)."""
    detokenize: bool = True
    """Undo the tokenization of WikiText, CBT, PTB and 1BW (``" @-@ "`` → ``"-"``, ``" ,"`` → ``","``) before
    scoring."""
    max_length: int | None = None
    """Tokens per forward pass (contexts are left-truncated to fit); None = the model's context as
    lm-evaluation-harness reads it (:func:`hf_gpt2.evaluation.scoring.model_context_length`)."""
    add_special_tokens: bool | None = None
    """Whether documents and contexts are encoded with the tokenizer's special tokens; None = the tokenizer's default
    (lm-evaluation-harness's ``add_bos_token=None``; GPT-2's BPE adds none)."""
    prefix_token_id: int | None = None
    """The token before each document and empty context; None = BOS, else EOS (lm-evaluation-harness's order)."""
    cbt_split: str = "validation"
    """CBT split: ``validation`` (the GPT-2 paper's: a test-set book is in WebText) or ``test``."""
    test_bytes: int = STANDARD_TEST_BYTES
    """enwik8/text8: score the last this many bytes of the file given (0 = the whole file)."""

    def __post_init__(self) -> None:
        problems = []
        if self.cbt_split not in CBT_SPLITS:
            problems.append(f"cbt_split must be one of {', '.join(CBT_SPLITS)}, got {self.cbt_split!r}")
        if self.test_bytes < 0:
            problems.append(f"test_bytes must be >= 0 (0 = the whole file), got {self.test_bytes}")
        for name in ("context", "stride", "max_length"):
            value = getattr(self, name)
            if value is not None and value < 1:
                problems.append(f"{name} must be >= 1 (or None for the default), got {value}")
        if problems:
            raise HfGPT2Error("; ".join(problems))


class Task(abc.ABC):
    """A benchmark: reads its documents, builds log-likelihood requests, and aggregates them with its metric."""

    name: ClassVar[str]
    summary: ClassVar[str]
    hub: ClassVar[HubSource | None] = None
    """The default data source; None means the task runs only on data given with ``--data``."""
    accepts_hub_paths: ClassVar[bool] = False
    """Whether ``--data`` may name a Hub dataset repo (``hf://datasets/OWNER/REPO``) instead of a local path."""

    def has_default_source(self) -> bool:
        """Whether the task runs without ``--data``."""
        return self.hub is not None

    @abc.abstractmethod
    def run(
        self, scorer: LoglikelihoodScorer, data: str | None, *, limit: int | None, options: EvalOptions
    ) -> dict[str, float]:
        """Score the task and return its metrics plus ``"n"`` (the number of documents or items scored)."""

    def source(self, options: EvalOptions) -> HubSource | None:
        """The Hub source for these options (a task whose split is an option overrides this)."""
        return self.hub

    def describe_source(self, data: str | None, options: EvalOptions | None = None) -> str:
        """Where the documents come from, for logs and the results JSON."""
        if data is not None:
            return data
        hub = self.source(options or EvalOptions())
        return hub.describe() if hub is not None else "(none: pass --data)"

    def data_label(self, data: str | None, options: EvalOptions | None = None) -> str:
        """A short name of the data and split scored, for the results table."""
        if data is not None:
            return f"{data}"
        hub = self.source(options or EvalOptions())
        return hub.label() if hub is not None else "-"


def take(rows: Sequence[Any], limit: int | None) -> list[Any]:
    """The first ``limit`` rows (all of them when limit is None)."""
    return list(rows if limit is None else rows[:limit])


def window_settings(
    scorer: LoglikelihoodScorer, options: EvalOptions, task: str, *, overlap: bool = False
) -> tuple[int, int]:
    """The (context, stride) of a rolling task, checked against the scoring length. Without ``options.stride`` the
    windows are disjoint (stride = context), or overlap by half with ``overlap`` (stride = context // 2)."""
    context = options.context or scorer.max_length
    if context > scorer.max_length:
        raise ContextLengthError(
            f"{task}: a context of {context} tokens was asked for, but the model's context is {scorer.max_length} "
            f"tokens; use --context {scorer.max_length} or less"
        )
    stride = options.stride or (max(1, context // 2) if overlap else context)
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
    """Score each text as a document (prefix token, rolling windows) and aggregate with
    :class:`RollingPerplexityMetric`.

    ``num_words`` and ``num_bytes`` are each document's counts in the original text (the task decides what a word
    is); ``context`` and ``stride`` come from :func:`window_settings` and are reported with the metrics.
    """
    scored = score_documents(
        scorer,
        scorer.encode_documents(texts),
        context=context,
        stride=stride,
        prefix_token=scorer.prefix_token_id,
        desc=desc,
    )
    metrics = RollingPerplexityMetric().compute(
        log_likelihood=[ll for ll, _ in scored],
        num_tokens=[n for _, n in scored],
        num_words=list(num_words),
        num_bytes=list(num_bytes),
    )
    return {**metrics, "context": float(context), "stride": float(stride)}

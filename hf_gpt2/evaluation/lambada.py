"""LAMBADA on OpenAI's test file: predict the last word of a passage from the passage.

``lambada_openai`` follows lm-evaluation-harness: the context is the text up to its last space, the target is " " plus
the last word (possibly several BPE tokens); ``acc`` counts targets whose every token is the greedy choice and ``ppl``
is exp(−mean target log-likelihood). ``lambada_openai_paper`` is the GPT-2 paper's variant, which predicts only the
last BPE token; its numbers are not comparable with lm-evaluation-harness's.
"""

from __future__ import annotations

from typing import ClassVar

from hf_gpt2.errors import DataError
from hf_gpt2.evaluation.base import EvalOptions, Task, take
from hf_gpt2.evaluation.metrics import TargetLikelihoodMetric
from hf_gpt2.evaluation.scoring import LoglikelihoodRequest, LoglikelihoodScorer
from hf_gpt2.evaluation.sources import HubSource, load_records, require_fields

LAMBADA_HUB = HubSource(repo="EleutherAI/lambada_openai", config="default", split="test")


def split_last_word(text: str) -> tuple[str, str]:
    """``"a b c"`` → ``("a b", " c")``: lm-evaluation-harness's context and target for LAMBADA."""
    context, _, last_word = text.rpartition(" ")
    return context, " " + last_word


class LambadaOpenAI(Task):
    name: ClassVar[str] = "lambada_openai"
    summary: ClassVar[str] = "LAMBADA (OpenAI test file), last whole word; lm-evaluation-harness semantics"
    hub: ClassVar[HubSource | None] = LAMBADA_HUB

    def run(
        self, scorer: LoglikelihoodScorer, data: str | None, *, limit: int | None, options: EvalOptions
    ) -> dict[str, float]:
        texts = take(load_texts(self.name, data), limit)
        requests = [self.request(scorer, text) for text in texts]
        results = scorer.loglikelihood(requests, desc=self.name)
        metrics = TargetLikelihoodMetric().compute(
            log_likelihood=[r.log_likelihood for r in results], is_greedy=[int(r.is_greedy) for r in results]
        )
        return {**metrics, "n": float(len(texts))}

    def request(self, scorer: LoglikelihoodScorer, text: str) -> LoglikelihoodRequest:
        context, target = split_last_word(text)
        return LoglikelihoodRequest(*scorer.encode_pair(context, target))


class LambadaOpenAIPaper(LambadaOpenAI):
    name: ClassVar[str] = "lambada_openai_paper"
    summary: ClassVar[str] = "LAMBADA (OpenAI test file), last BPE token only: the GPT-2 paper's variant"

    def request(self, scorer: LoglikelihoodScorer, text: str) -> LoglikelihoodRequest:
        tokens = scorer.encode(text)
        if len(tokens) < 2:
            raise DataError(f"{self.name}: the passage {text!r} has fewer than 2 tokens")
        return LoglikelihoodRequest(context=tokens[:-1], continuation=tokens[-1:])


def load_texts(task: str, data: str | None) -> list[str]:
    """The passages: rows ``{"text": ...}`` of a local jsonl/parquet file or of EleutherAI/lambada_openai."""
    rows = load_records(task, data, LAMBADA_HUB)
    require_fields(task, rows, ["text"])
    texts = [str(row["text"]).strip() for row in rows]
    short = [t for t in texts if " " not in t]
    if short:
        raise DataError(f"{task}: {len(short)} passages have no space to split off a last word, e.g. {short[0]!r}")
    return texts

"""LAMBADA on OpenAI's test file (5,153 passages): predict the last word of a passage from the passage.

Two protocols, three published GPT-2 124M numbers:

- ``lambada_openai`` is lm-evaluation-harness's task: the context is the text up to its last space, the target is
  " " plus the last word (often several BPE tokens); ``acc`` counts targets whose every token is the greedy choice and
  ``ppl`` is exp(−mean target log-likelihood). lm-evaluation-harness reports 32.56 % / 40.06 for GPT-2 124M.
- ``lambada_openai_paper`` scores only the last BPE token of the passage given everything before it, the unit OpenAI
  used for the GPT-2 paper (45.99 % / 35.13 in its Table 3). Its requests are the ones of the published reproduction,
  cybertronai/bflm's ``eval_lambada.py`` (46.67 % on GPT-2 124M): the whole passage tokenized, the last token
  predicted greedily. With GPT-2's BPE the two constructions give the same 5,153 requests (every passage's last token
  is the last token of its last word, and every context encodes as a prefix of its passage).

The texts are used as given (no stripping), as lm-evaluation-harness does.
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
    """``"a b c"`` → ``("a b", " c")``: lm-evaluation-harness's context and target for LAMBADA (split at the last
    space; a passage without one has an empty context)."""
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
        return LoglikelihoodRequest(*scorer.encode_pair(*split_last_word(text)))


class LambadaOpenAIPaper(LambadaOpenAI):
    name: ClassVar[str] = "lambada_openai_paper"
    summary: ClassVar[str] = (
        "LAMBADA (OpenAI test file), last BPE token only: the GPT-2 paper's unit, the requests of its published "
        "reproduction (cybertronai/bflm)"
    )

    def request(self, scorer: LoglikelihoodScorer, text: str) -> LoglikelihoodRequest:
        context, target = scorer.encode_pair(*split_last_word(text))
        if not target:
            raise DataError(f"{self.name}: the passage {text!r} ends in a space; there is no last token to predict")
        return LoglikelihoodRequest(context=[*context, *target[:-1]], continuation=target[-1:])


def load_texts(task: str, data: str | None) -> list[str]:
    """The passages: rows ``{"text": ...}`` of a local jsonl/parquet file or of EleutherAI/lambada_openai."""
    rows = load_records(task, data, LAMBADA_HUB)
    require_fields(task, rows, ["text"])
    texts = [str(row["text"]) for row in rows]
    empty = sum(not t.strip() for t in texts)
    if empty:
        raise DataError(f"{task}: {empty} of {len(texts)} passages are empty; every passage needs a last word")
    return texts

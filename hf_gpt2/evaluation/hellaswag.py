"""HellaSwag (validation split): pick the right ending of a short activity description, lm-evaluation-harness style.

The query is ``activity_label + ": " + ctx_a + " " + ctx_b.capitalize()`` with WikiHow's bracket artifacts removed;
each ending is scored as the continuation ``" " + ending``. ``acc`` picks the highest summed log-probability,
``acc_norm`` the highest log-probability per character of the ending.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from hf_gpt2.errors import DataError
from hf_gpt2.evaluation.base import EvalOptions, Task, take
from hf_gpt2.evaluation.metrics import MultipleChoiceMetric
from hf_gpt2.evaluation.scoring import LoglikelihoodRequest, LoglikelihoodScorer
from hf_gpt2.evaluation.sources import HubSource, load_records, require_fields

# Rowan/hellaswag's main branch is a loading script; its parquet export lives on refs/convert/parquet.
HELLASWAG_PARQUET = "hf://datasets/Rowan/hellaswag@refs%2Fconvert%2Fparquet/default/validation/0000.parquet"


def hellaswag_preprocess(text: str) -> str:
    """Strip WikiHow's ``[title]``/``[step]`` artifacts (lm-evaluation-harness's rule)."""
    text = text.strip().replace(" [title]", ". ")
    text = re.sub(r"\[.*?\]", "", text)
    return text.replace("  ", " ")


def hellaswag_item(row: dict[str, Any]) -> tuple[str, list[str], int]:
    """(query, endings, label) of one row; the label may be an int (original jsonl) or a string (Hub parquet)."""
    if row["label"] in (None, ""):
        raise DataError("hellaswag: a row has no label (the test split is unlabelled; use the validation split)")
    query = hellaswag_preprocess(f"{row['activity_label']}: {row['ctx_a']} {str(row['ctx_b']).capitalize()}")
    return query, [hellaswag_preprocess(e) for e in row["endings"]], int(row["label"])


class HellaSwag(Task):
    name: ClassVar[str] = "hellaswag"
    summary: ClassVar[str] = (
        "HellaSwag validation, 4-way multiple choice; acc and acc_norm, lm-evaluation-harness style"
    )
    hub: ClassVar[HubSource | None] = HubSource(
        repo="Rowan/hellaswag", split="validation", data_files=HELLASWAG_PARQUET
    )

    def run(
        self, scorer: LoglikelihoodScorer, data: str | None, *, limit: int | None, options: EvalOptions
    ) -> dict[str, float]:
        rows = load_records(self.name, data, self.hub)
        require_fields(self.name, rows, ["activity_label", "ctx_a", "ctx_b", "endings", "label"])
        items = [hellaswag_item(row) for row in take(rows, limit)]
        requests = [
            LoglikelihoodRequest(*scorer.encode_pair(query, " " + ending))
            for query, endings, _ in items
            for ending in endings
        ]
        results = iter(scorer.loglikelihood(requests, desc=self.name))
        metrics = MultipleChoiceMetric().compute(
            log_likelihoods=[[next(results).log_likelihood for _ in endings] for _, endings, _ in items],
            choice_lengths=[[len(e) for e in endings] for _, endings, _ in items],
            label=[label for _, _, label in items],
        )
        return {**metrics, "n": float(len(items))}

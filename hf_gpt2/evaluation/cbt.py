"""The Children's Book Test (CBT-CN: common nouns, CBT-NE: named entities), scored as in the GPT-2 paper.

Each item is 20 sentences of a children's book and a 21st with one word replaced by ``XXXXX``, plus 10 candidate
words. Following the paper (and the CBT paper's §4.4), each candidate is filled into the question and ranked by the
log-probability of the whole filled sentence given the 20 sentences, not only of the candidate word. Text is
detokenized first (``" ,"`` → ``","``, ````` `` `````/``''`` → ``"``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, ClassVar

from hf_gpt2.errors import DataError
from hf_gpt2.evaluation.base import EvalOptions, Task, take
from hf_gpt2.evaluation.metrics import MultipleChoiceMetric
from hf_gpt2.evaluation.scoring import LoglikelihoodRequest, LoglikelihoodScorer
from hf_gpt2.evaluation.sources import HubSource, load_records, require_fields, resolve_path

BLANK = "XXXXX"
CBT_FIELDS = ("sentences", "question", "answer", "options")
# cam-cst/cbt's main branch is parquet: <config>/<split>-0000k-of-0000n.parquet.
CBT_FILES = "hf://datasets/cam-cst/cbt"


def cbt_detokenize(text: str) -> str:
    """Undo CBT's PTB-style tokenization (the rules of lm-evaluation-harness's former CBT task)."""
    text = text.replace(" '", "'").replace(" \n", "\n").replace("\n ", "\n").replace(" n't", "n't")
    text = text.replace("`` ", '"').replace("''", '"')
    for mark in (":", ";", "!", "?", ",", "."):
        text = text.replace(f" {mark}", mark)
    return text


def parse_cbt_text(text: str) -> list[dict[str, Any]]:
    """Parse CBT's original text format (``cbtest_CN_test_2500ex.txt``): 20 numbered sentences, then
    ``21 question<TAB>answer<TAB><TAB>option|option|...``, items separated by blank lines."""
    items = []
    for block in re.split(r"\n\s*\n", text.strip()):
        lines = [line for line in block.split("\n") if line.strip()]
        numbered = [line.split(" ", 1) for line in lines]
        sentences = [rest for _, rest in numbered[:-1]]
        fields = numbered[-1][1].split("\t") if numbered and len(numbered[-1]) == 2 else []
        if len(fields) < 4 or not sentences:
            raise DataError(f"cbt: cannot parse the item starting {block[:80]!r} (expected 21 numbered lines)")
        items.append(
            {"sentences": sentences, "question": fields[0], "answer": fields[1], "options": fields[-1].split("|")}
        )
    return items


class CBT(Task):
    """One CBT subset; the subclasses name the Hub config."""

    def run(
        self, scorer: LoglikelihoodScorer, data: str | None, *, limit: int | None, options: EvalOptions
    ) -> dict[str, float]:
        items = take(self.load_items(data), limit)
        detok = cbt_detokenize if options.detokenize else (lambda s: s)
        requests, labels = [], []
        for item in items:
            context_ids = scorer.encode(detok(" ".join(item["sentences"])))
            for option in item["options"]:
                filled = detok(str(item["question"]).replace(BLANK, option))
                requests.append(LoglikelihoodRequest(context=context_ids, continuation=scorer.encode(" " + filled)))
            labels.append(list(item["options"]).index(item["answer"]))
        results = iter(scorer.loglikelihood(requests, desc=self.name))
        lls = [[next(results).log_likelihood for _ in item["options"]] for item in items]
        metrics = MultipleChoiceMetric().compute(
            log_likelihoods=lls, choice_lengths=[[len(o) for o in item["options"]] for item in items], label=labels
        )
        return {"acc": metrics["acc"], "n": float(len(items))}

    def load_items(self, data: str | None) -> list[dict[str, Any]]:
        """Items from CBT's original text file, a jsonl/parquet with the Hub's fields, or cam-cst/cbt."""
        if data is not None and resolve_path(self.name, data).suffix == ".txt":
            items = parse_cbt_text(Path(data).read_text(encoding="utf-8"))
        else:
            items = load_records(self.name, data, self.hub)
            require_fields(self.name, items, CBT_FIELDS)
        for item in items:
            if item["answer"] not in item["options"]:
                raise DataError(
                    f"{self.name}: the answer {item['answer']!r} is not among the options {item['options']}"
                )
            if BLANK not in item["question"]:
                raise DataError(f"{self.name}: the question {item['question']!r} has no {BLANK} to fill")
        return items


class CBTCommonNouns(CBT):
    name: ClassVar[str] = "cbt_cn"
    summary: ClassVar[str] = "Children's Book Test, common nouns: rank filled sentences by log-probability"
    hub: ClassVar[HubSource | None] = HubSource(
        repo="cam-cst/cbt", config="CN", split="test", data_files=f"{CBT_FILES}/CN/test-*.parquet"
    )


class CBTNamedEntities(CBT):
    name: ClassVar[str] = "cbt_ne"
    summary: ClassVar[str] = "Children's Book Test, named entities: rank filled sentences by log-probability"
    hub: ClassVar[HubSource | None] = HubSource(
        repo="cam-cst/cbt", config="NE", split="test", data_files=f"{CBT_FILES}/NE/test-*.parquet"
    )

"""The Children's Book Test (CBT-CN: common nouns, CBT-NE: named entities), scored as in the GPT-2 paper.

The split is the validation split by default, as in the paper (one of the test-set books, The Jungle Book, is in
WebText); ``--cbt-split test`` scores the test split. The results table names the split.

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
from hf_gpt2.evaluation.sources import (
    RECORD_SUFFIXES,
    HubSource,
    read_records,
    require_fields,
    resolve_path,
)

BLANK = "XXXXX"
CBT_FIELDS = ("sentences", "question", "answer", "options")
# cam-cst/cbt's main branch is parquet: <config>/<split>-0000k-of-0000n.parquet.
CBT_FILES = "hf://datasets/cam-cst/cbt"
# How a file name shows its split: the Hub's "<split>-00000-of-00001.parquet", CBT's "cbtest_CN_valid_2000ex.txt".
_SPLIT_IN_NAME = {
    "validation": re.compile(r"^validation[-_.]|_valid(ation)?[_.]"),
    "test": re.compile(r"^test[-_.]|_test[_.]"),
    "train": re.compile(r"^train[-_.]|_train[_.]"),
}
_SUBSET_IN_NAME = re.compile(r"_(CN|NE|P|V)_")


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

    config: ClassVar[str]

    def source(self, options: EvalOptions) -> HubSource:
        split = options.cbt_split
        files = f"{CBT_FILES}/{self.config}/{split}-*.parquet"
        return HubSource(repo="cam-cst/cbt", config=self.config, split=split, data_files=files)

    def data_label(self, data: str | None, options: EvalOptions | None = None) -> str:
        split = (options or EvalOptions()).cbt_split
        return f"{data}, split {split}" if data is not None else self.source(options or EvalOptions()).label()

    def run(
        self, scorer: LoglikelihoodScorer, data: str | None, *, limit: int | None, options: EvalOptions
    ) -> dict[str, float]:
        items = take(self.load_items(data, options.cbt_split), limit)
        detok = cbt_detokenize if options.detokenize else (lambda s: s)
        requests, labels = [], []
        for item in items:
            context_ids = scorer.encode_document(detok(" ".join(item["sentences"])))
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

    def load_items(self, data: str | None, split: str = "validation") -> list[dict[str, Any]]:
        """Items of ``split`` from CBT's original text file, a jsonl/parquet with the Hub's fields (a file, or a folder
        holding the splits in the Hub's or CBT's file names), or cam-cst/cbt."""
        if data is None:
            items = self.source(EvalOptions(cbt_split=split)).load(self.name)
        else:
            files = self._split_files(resolve_path(self.name, data), split)
            if all(f.suffix == ".txt" for f in files):
                items = [item for f in files for item in parse_cbt_text(f.read_text(encoding="utf-8"))]
            else:
                items = read_records(self.name, files)
        require_fields(self.name, items, CBT_FIELDS)
        for item in items:
            if item["answer"] not in item["options"]:
                raise DataError(
                    f"{self.name}: the answer {item['answer']!r} is not among the options {item['options']}"
                )
            if BLANK not in item["question"]:
                raise DataError(f"{self.name}: the question {item['question']!r} has no {BLANK} to fill")
        return items

    def _split_files(self, path: Path, split: str) -> list[Path]:
        """The files of ``split`` at ``path``: a file whose name names another split is refused; a folder gives the
        files whose names name ``split``."""
        if path.is_file():
            named = [name for name, pattern in _SPLIT_IN_NAME.items() if pattern.search(path.name)]
            if named and split not in named:
                raise DataError(
                    f"{self.name}: {path.name} holds the {named[0]} split but the {split} split is asked for; pass "
                    f"the {split} file, or --cbt-split {named[0]}"
                )
            return [path]
        files = [
            p
            for p in sorted(path.iterdir())
            if p.is_file() and p.name.endswith((*RECORD_SUFFIXES, ".txt")) and _SPLIT_IN_NAME[split].search(p.name)
        ]
        # CBT's own folder holds every subset (cbtest_CN_..., cbtest_NE_..., cbtest_P_..., cbtest_V_...).
        files = [p for p in files if not _SUBSET_IN_NAME.search(p.name) or f"_{self.config}_" in p.name]
        if not files:
            raise DataError(
                f"{self.name}: the folder {path} has no {split} file (expected e.g. {split}-00000-of-00001.parquet or "
                f"cbtest_{self.config}_{'valid_2000ex' if split == 'validation' else 'test_2500ex'}.txt)"
            )
        return files


class CBTCommonNouns(CBT):
    name: ClassVar[str] = "cbt_cn"
    summary: ClassVar[str] = "Children's Book Test, common nouns: rank filled sentences by log-probability"
    config: ClassVar[str] = "CN"
    hub: ClassVar[HubSource | None] = HubSource(
        repo="cam-cst/cbt", config="CN", split="validation", data_files=f"{CBT_FILES}/CN/validation-*.parquet"
    )


class CBTNamedEntities(CBT):
    name: ClassVar[str] = "cbt_ne"
    summary: ClassVar[str] = "Children's Book Test, named entities: rank filled sentences by log-probability"
    config: ClassVar[str] = "NE"
    hub: ClassVar[HubSource | None] = HubSource(
        repo="cam-cst/cbt", config="NE", split="validation", data_files=f"{CBT_FILES}/NE/validation-*.parquet"
    )

"""WikiText-2 and WikiText-103 (test split): document-level rolling log-likelihood.

Each Wikipedia article is one document (split on the level-1 headings ``" = Title = "``, as in
EleutherAI/wikitext_document_level). It is detokenized (``" @-@ "`` → ``"-"``, ``" , "`` → ``", "``, the reversible
rules lm-evaluation-harness uses in place of the paper's unpublished invertible detokenizers), prefixed with the
prefix token (BOS, else EOS) and scored in windows (:func:`hf_gpt2.evaluation.scoring.rolling_windows`).

Reported: ``word_perplexity`` (normalised by the whitespace-separated words of the original text, the paper's unit
and lm-evaluation-harness's), ``token_perplexity`` (per BPE token), ``byte_perplexity`` and ``bits_per_byte``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, ClassVar

from hf_gpt2.errors import DataError
from hf_gpt2.evaluation.base import EvalOptions, Task, rolling_perplexity, take, window_settings
from hf_gpt2.evaluation.scoring import LoglikelihoodScorer
from hf_gpt2.evaluation.sources import HubSource, load_records, read_records, record_files, resolve_path

RAW_TEXT_SUFFIXES = (".raw", ".tokens", ".txt")
# Salesforce/wikitext's main branch is parquet: <config>/<split>-0000k-of-0000n.parquet.
WIKITEXT_FILES = "hf://datasets/Salesforce/wikitext"


def wikitext_detokenize(text: str) -> str:
    """Undo WikiText's tokenization (lm-evaluation-harness's rules, applied in the same order)."""
    # contractions
    text = text.replace("s '", "s'")
    text = re.sub(r"/' [0-9]/", r"/'[0-9]/", text)
    # number separators
    text = text.replace(" @-@ ", "-").replace(" @,@ ", ",").replace(" @.@ ", ".")
    # punctuation
    for mark in (":", ";", ".", "!", "?", ","):
        text = text.replace(f" {mark} ", f"{mark} ")
    # brackets and quotes hug their contents
    text = re.sub(r"\(\s*([^\)]*?)\s*\)", r"(\1)", text)
    text = re.sub(r"\[\s*([^\]]*?)\s*\]", r"[\1]", text)
    text = re.sub(r"{\s*([^}]*?)\s*}", r"{\1}", text)
    text = re.sub(r"\"\s*([^\"]*?)\s*\"", r'"\1"', text)
    text = re.sub(r"'\s*([^']*?)\s*'", r"'\1'", text)
    # headings and the rest
    text = text.replace("= = = =", "====").replace("= = =", "===").replace("= =", "==")
    text = text.replace(" " + chr(176) + " ", chr(176))
    text = text.replace(" \n", "\n").replace("\n ", "\n")
    text = text.replace(" N ", " 1 ")
    text = text.replace(" 's", "'s")
    return text


def split_pages(text: str) -> list[str]:
    """Split a WikiText file into articles at its level-1 headings (EleutherAI/wikitext_document_level's rule).

    Blank lines before the first heading (the files start with one) are not an article.
    """
    pages, lines = [], []
    for line in text.split("\n"):
        heading = line.replace("= = =", "===").replace("= =", "==").strip()
        if heading.startswith("= ") and heading.endswith(" ="):
            page = "\n".join(lines)
            if page.strip():
                pages.append(page)
            lines = []
        lines.append(line)
    page = "\n".join(lines)
    if page.strip():
        pages.append(page)
    return pages


def lines_to_text(rows: list[dict[str, Any]]) -> str:
    """Rebuild a WikiText file from the Hub's line rows: Salesforce/wikitext stores the files' blank lines (" \\n")
    as "" and keeps the newline of every other line."""
    return "".join(row["text"] if row["text"] else " \n" for row in rows)


def count_words(text: str) -> int:
    """Words as lm-evaluation-harness counts them: ``len(re.split(r"\\s+", text))``."""
    return len(re.split(r"\s+", text))


class WikiText(Task):
    """One WikiText variant; the subclasses name the Hub config."""

    def run(
        self, scorer: LoglikelihoodScorer, data: str | None, *, limit: int | None, options: EvalOptions
    ) -> dict[str, float]:
        context, stride = window_settings(scorer, options, self.name)  # before the download: fail early
        pages = take(self.load_pages(data), limit)
        metrics = rolling_perplexity(
            scorer,
            [wikitext_detokenize(p) if options.detokenize else p for p in pages],
            num_words=[count_words(p) for p in pages],
            num_bytes=[len(p.encode("utf-8")) for p in pages],
            context=context,
            stride=stride,
            desc=self.name,
        )
        return {**metrics, "n": float(len(pages))}

    def load_pages(self, data: str | None) -> list[str]:
        """Articles from a raw WikiText file (``wiki.test.raw``), a jsonl/parquet of ``page`` (document level) or
        ``text`` (line level, as on the Hub) rows, or the Hub's Salesforce/wikitext."""
        if data is not None and resolve_path(self.name, data).suffix in RAW_TEXT_SUFFIXES:
            return split_pages(Path(data).read_text(encoding="utf-8"))
        if data is not None:
            rows = read_records(self.name, record_files(self.name, resolve_path(self.name, data)))
        else:
            rows = load_records(self.name, None, self.hub)  # the Hub's line rows
        if "page" in rows[0]:  # EleutherAI/wikitext_document_level's rows: every one is scored, as lm-eval does
            return [str(row["page"]) for row in rows]
        if "text" in rows[0]:
            return split_pages(lines_to_text(rows))
        raise DataError(
            f"{self.name}: rows need a 'page' (one article) or 'text' (one line) field; got {sorted(rows[0])}"
        )


class WikiText2(WikiText):
    name: ClassVar[str] = "wikitext2"
    summary: ClassVar[str] = "WikiText-2 test, rolling log-likelihood per article (raw text, detokenized)"
    hub: ClassVar[HubSource | None] = HubSource(
        repo="Salesforce/wikitext",
        config="wikitext-2-raw-v1",
        split="test",
        data_files=f"{WIKITEXT_FILES}/wikitext-2-raw-v1/test-*.parquet",
    )


class WikiText103(WikiText):
    name: ClassVar[str] = "wikitext103"
    summary: ClassVar[str] = "WikiText-103 test, rolling log-likelihood per article (raw text, detokenized)"
    hub: ClassVar[HubSource | None] = HubSource(
        repo="Salesforce/wikitext",
        config="wikitext-103-raw-v1",
        split="test",
        data_files=f"{WIKITEXT_FILES}/wikitext-103-raw-v1/test-*.parquet",
    )

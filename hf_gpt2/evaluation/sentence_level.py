"""Penn Treebank and the One Billion Word benchmark: word-level language modelling on tokenized sentences.

Both corpora come as tokenized sentences, one per line. Each sentence is stripped and blank lines are dropped, so
Mikolov's ``ptb.test.txt`` (whose lines start and end with a space) and the Hub's rows give the same text.

- ``ptb`` (Mikolov's preprocessing: lowercase, ``<unk>``, numbers as ``N``; 3,761 test sentences) is scored as ONE
  stream, the sentences joined by ``"\\n"``, after the prefix token (BOS, else EOS), in rolling windows
  (``--context``/``--stride``), like WikiText. The detokenizer is Megatron-LM's for zero-shot PTB, with its number
  rule fixed (:func:`ptb_detokenize`).
- ``lm1b`` (306,688 sentences of the Hub's test split) is scored one sentence at a time: each sentence is its own
  document after the prefix token (a sentence longer than the context rolls), because the corpus is shuffled at the
  sentence level and there is nothing to learn across sentence boundaries. The detokenizer is a small rule set of
  this package (:func:`lm1b_detokenize`). The Hub's test split holds all 50 held-out shards; the test set of the
  1BW paper is the first shard alone (``news.en.heldout-00000-of-00050``, about 6k sentences), which
  ``--data lm1b=news.en.heldout-00000-of-00050`` scores.

Word count. ``word_perplexity`` is normalised by the words of the ORIGINAL (tokenized) text plus one end of sentence
per sentence: ``sum(len(sentence.split()) + 1)``. That is the count both benchmarks were defined with (Mikolov's
PTB counts an ``<eos>`` per line; 1BW counts ``</S>`` per sentence), so the number is per benchmark token and
comparable across tokenizers. The model never predicts a separate end token: in the PTB stream the ``"\\n"`` between
sentences is scored as text (one fewer than the sentences counted), in ``lm1b`` nothing after a sentence is scored.
``token_perplexity`` is per BPE token scored; ``byte_perplexity``/``bits_per_byte`` are per UTF-8 byte of the
original text (the PTB stream with its newlines; the lm1b sentences without any separator).
"""

from __future__ import annotations

import abc
import re
from typing import Any, ClassVar

from hf_gpt2.errors import DataError
from hf_gpt2.evaluation.base import EvalOptions, Task, rolling_perplexity, take, window_settings
from hf_gpt2.evaluation.scoring import LoglikelihoodScorer
from hf_gpt2.evaluation.sources import RECORD_SUFFIXES, HubSource, read_records, record_files, resolve_path

# Both repos' main branches are loading scripts; their parquet exports live on refs/convert/parquet.
PTB_PARQUET = "hf://datasets/ptb-text-only/ptb_text_only@refs%2Fconvert%2Fparquet/penn_treebank/test/0000.parquet"
LM1B_PARQUET = "hf://datasets/billion-word-benchmark/lm1b@refs%2Fconvert%2Fparquet/plain_text/test/*.parquet"

_PTB_NUMBER = re.compile(r"(?<!\S)N(?!\S)")  # the placeholder N as a whole token
_PTB_RULES = (
    (" '", "'"),
    (" \n", "\n"),
    ("\n ", "\n"),
    (" n't", "n't"),
    (_PTB_NUMBER, "1"),
    ("$ 1", "$1"),
    ("# 1", "#1"),
)
_LM1B_CONTRACTION = re.compile(r" (n't|'s|'re|'ve|'ll|'d|'m)(?= |$)", re.IGNORECASE)
_LM1B_CLOSING = re.compile(r" ([.,;:!?%)])(?= |$)")
_LM1B_OPENING = re.compile(r"(^| )\( ")
_LM1B_CURRENCY = re.compile(r"\$ (?=[0-9])")


def ptb_detokenize(text: str) -> str:
    """Undo PTB's tokenization with Megatron-LM's zero-shot rules, in their order, with one fix.

    ``" '"`` → ``"'"``, ``" \\n"``/``"\\n "`` → ``"\\n"``, ``" n't"`` → ``"n't"``, the number placeholder ``N``
    (a whole token) → ``1``, ``"$ 1"`` → ``"$1"``, ``"# 1"`` → ``"#1"``. Megatron-LM writes the number rule as
    ``" N "`` → ``"1 "``, which glues the digit to the word before ("fell N points" → "fell1 points") and leaves its
    own ``"$ 1"`` rule nothing to do; here the digit keeps its spaces ("fell 1 points", "$ N" → "$1").
    """
    for old, new in _PTB_RULES:
        text = old.sub(new, text) if isinstance(old, re.Pattern) else text.replace(old, new)
    return text


def lm1b_detokenize(sentence: str) -> str:
    """Undo the spaces 1BW's tokenizer put around punctuation, with four rules applied in this order.

    1. Contractions join the word before: ``" n't"``, ``" 's"``, ``" 're"``, ``" 've"``, ``" 'll"``, ``" 'd"``,
       ``" 'm"`` (any case; only as whole tokens).
    2. Closing marks join the word before: ``. , ; : ! ? % )`` when the mark is a token of its own.
    3. An opening bracket joins the word after: ``"( "`` → ``"("``.
    4. A dollar sign joins the number after: ``"$ 5"`` → ``"$5"``.

    Quotes stay as they are: a shuffled sentence often holds only one of a pair, so they cannot be paired reliably.
    """
    sentence = _LM1B_CONTRACTION.sub(r"\1", sentence)
    sentence = _LM1B_CLOSING.sub(r"\1", sentence)
    sentence = _LM1B_OPENING.sub(r"\1(", sentence)
    return _LM1B_CURRENCY.sub("$", sentence)


def count_words(document: str) -> int:
    """The benchmark tokens of tokenized sentences, one per line: the whitespace-separated words plus one end of
    sentence per line."""
    return len(document.split()) + document.count("\n") + 1


class SentenceCorpus(Task):
    """A corpus of tokenized sentences, one per line of a text file or one per row."""

    fields: ClassVar[tuple[str, ...]]
    """The row fields that may hold the sentence, in order of preference."""
    expected: ClassVar[str]
    """What ``--data`` should point to, for error messages."""

    @abc.abstractmethod
    def detokenize(self, text: str) -> str:
        """Undo the corpus's tokenization (used when ``options.detokenize``)."""

    @abc.abstractmethod
    def documents(self, sentences: list[str]) -> list[str]:
        """The original (tokenized) texts scored as documents, each of one or more sentences joined by ``"\\n"``."""

    def run(
        self, scorer: LoglikelihoodScorer, data: str | None, *, limit: int | None, options: EvalOptions
    ) -> dict[str, float]:
        context, stride = window_settings(scorer, options, self.name)  # before the download: fail early
        sentences = take(self.load_sentences(data), limit)
        documents = self.documents(sentences)
        metrics = rolling_perplexity(
            scorer,
            [self.detokenize(d) for d in documents] if options.detokenize else documents,
            num_words=[count_words(d) for d in documents],
            num_bytes=[len(d.encode("utf-8")) for d in documents],
            context=context,
            stride=stride,
            desc=self.name,
        )
        return {**metrics, "n": float(len(sentences))}

    def load_sentences(self, data: str | None) -> list[str]:
        """The stripped, non-blank sentences of a text file (one per line), of jsonl/json/parquet rows, or of the
        task's Hub split."""
        if data is None:
            assert self.hub is not None, f"{self.name} has a Hub source"
            lines, source = self._field(self.hub.load(self.name)), self.hub.describe()
        else:
            path = resolve_path(self.name, data)
            if path.is_file() and path.suffix not in RECORD_SUFFIXES:
                # Lines end at "\n" only: 1BW sentences hold characters (U+2028, a lone "\r") at which splitlines()
                # and read_text()'s newline translation would break them.
                lines = path.read_bytes().decode("utf-8").split("\n")
            else:
                lines = self._field(read_records(self.name, record_files(self.name, path), allow_empty=True))
            source = str(data)
        sentences = [s for s in (line.strip() for line in lines) if s]
        if not sentences:
            raise DataError(f"{self.name}: {source} holds no sentences; pass {self.expected}: --data {self.name}=PATH")
        return sentences

    def _field(self, rows: list[dict[str, Any]]) -> list[str]:
        if not rows:
            return []
        field = next((f for f in self.fields if f in rows[0]), None)
        if field is None:
            wanted = " or ".join(repr(f) for f in self.fields)
            raise DataError(f"{self.name}: rows need a {wanted} field (one sentence each); got {sorted(rows[0])}")
        return [str(row[field] or "") for row in rows]


class PennTreebank(SentenceCorpus):
    name: ClassVar[str] = "ptb"
    summary: ClassVar[str] = (
        "Penn Treebank test (Mikolov's 3,761 sentences) as one stream, rolling; word perplexity per word + <eos>"
    )
    hub: ClassVar[HubSource | None] = HubSource(
        repo="ptb-text-only/ptb_text_only", config="penn_treebank", split="test", data_files=PTB_PARQUET
    )
    fields: ClassVar[tuple[str, ...]] = ("sentence", "text")
    expected: ClassVar[str] = (
        "Mikolov's ptb.test.txt (one sentence per line) or jsonl/parquet rows with a 'sentence' or 'text' field"
    )

    def detokenize(self, text: str) -> str:
        return ptb_detokenize(text)

    def documents(self, sentences: list[str]) -> list[str]:
        return ["\n".join(sentences)]  # one stream


class OneBillionWord(SentenceCorpus):
    name: ClassVar[str] = "lm1b"
    summary: ClassVar[str] = (
        "One Billion Word test, each sentence scored on its own; word perplexity per word + end of sentence"
    )
    hub: ClassVar[HubSource | None] = HubSource(
        repo="billion-word-benchmark/lm1b", config="plain_text", split="test", data_files=LM1B_PARQUET
    )
    fields: ClassVar[tuple[str, ...]] = ("text",)
    expected: ClassVar[str] = (
        "1BW's held-out file news.en.heldout-00000-of-00050 (one sentence per line) or jsonl/parquet rows with a "
        "'text' field"
    )

    def detokenize(self, text: str) -> str:
        return lm1b_detokenize(text)

    def documents(self, sentences: list[str]) -> list[str]:
        return list(sentences)  # shuffled: each sentence on its own

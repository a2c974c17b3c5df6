"""enwik8 and text8: compression-style language modelling on the first 100 MB of English Wikipedia.

enwik8 is raw XML/UTF-8 bytes and is reported in bits per byte; text8 is the same text reduced to lowercase letters
and spaces and is reported in bits per character (one byte each). There is no Hub source: pass the file (``enwik8``,
``text8`` or their ``.zip`` from http://mattmahoney.net/dc/) with ``--data enwik8=PATH``.

- **Split.** The last 5,000,000 bytes of whatever file is given are scored (the standard test split of the
  100,000,000-byte files; a file of the test split alone, or a shorter one, is scored whole). ``--test-bytes N``
  takes the last N bytes instead, ``--test-bytes 0`` the whole file.
- **Bytes, exactly.** The split is decoded as strict UTF-8, never with replacement characters. A character cut by the
  split boundary (its first bytes lie in the validation split, 1–3 continuation bytes in the test split) cannot be
  tokenized alone, so those continuation bytes are not scored, and likewise an incomplete character at the end of the
  file. Bits per byte divides by the bytes scored, so every byte counted was predicted and every byte predicted is
  counted. Invalid UTF-8 anywhere else is an error that names the offset.
- **Windows.** The split is one document after the prefix token, scored in windows of the model's context that
  overlap by half (each window after the first predicts ``context // 2`` new tokens, so every token but the first
  ``context`` is predicted with at least half a context of history), as the common reproductions of these numbers do;
  ``--stride`` sets the overlap (``--stride`` = ``--context`` gives disjoint windows).
"""

from __future__ import annotations

import logging
import math
import zipfile
from pathlib import Path
from typing import ClassVar

from hf_gpt2.errors import DataError
from hf_gpt2.evaluation.base import EvalOptions, Task, score_documents, window_settings
from hf_gpt2.evaluation.scoring import LoglikelihoodScorer
from hf_gpt2.evaluation.sources import resolve_path

logger = logging.getLogger(__name__)


def read_corpus(task: str, path: Path) -> bytes:
    """The bytes of a corpus file, or of the single file inside a ``.zip``."""
    if path.suffix != ".zip":
        return path.read_bytes()
    with zipfile.ZipFile(path) as archive:
        members = [m for m in archive.namelist() if not m.endswith("/")]
        if len(members) != 1:
            raise DataError(f"{task}: {path} should hold one file, found {members}")
        return archive.read(members[0])


def utf8_length(lead: int) -> int:
    """The length of a UTF-8 sequence from its first byte (1 for ASCII; 0 for a continuation byte)."""
    if lead < 0x80:
        return 1
    if lead < 0xC0:
        return 0
    return 2 if lead < 0xE0 else 3 if lead < 0xF0 else 4


def decode_split(task: str, raw: bytes, *, offset: int = 0) -> tuple[str, int, int]:
    """Decode a byte range of a corpus exactly: the text of its whole characters, and how many bytes were left out
    at the start (continuation bytes of a character that began before the range) and at the end (an incomplete last
    character).

    Raises:
        DataError: the bytes in between are not UTF-8 (the message names the file offset, counting from ``offset``).
    """
    start = 0
    while start < min(3, len(raw)) and utf8_length(raw[start]) == 0:
        start += 1
    end = len(raw)
    for back in range(1, min(4, end - start) + 1):
        length = utf8_length(raw[end - back])
        if length:  # the last character's first byte
            if length > back:
                end -= back
            break
    try:
        text = raw[start:end].decode("utf-8")
    except UnicodeDecodeError as err:
        raise DataError(
            f"{task}: the bytes at offset {offset + start + err.start} are not UTF-8 ({err.reason}); enwik8 and text8 "
            "are UTF-8 text"
        ) from err
    return text, start, len(raw) - end


class CharacterLevel(Task):
    """Bits per byte (or character) of the test split of a corpus file, scored with overlapping rolling windows."""

    metric_name: ClassVar[str]

    def data_label(self, data: str | None, options: EvalOptions | None = None) -> str:
        test_bytes = (options or EvalOptions()).test_bytes
        return f"{data}, " + (f"last {test_bytes:,} bytes" if test_bytes else "whole file")

    def run(
        self, scorer: LoglikelihoodScorer, data: str | None, *, limit: int | None, options: EvalOptions
    ) -> dict[str, float]:
        if data is None:
            raise DataError(
                f"{self.name} has no Hub source; download http://mattmahoney.net/dc/{self.name}.zip and pass "
                f"--data {self.name}=PATH"
            )
        context, stride = window_settings(scorer, options, self.name, overlap=True)
        text = self.load_text(data, options.test_bytes)
        tokens = scorer.encode_document(text)
        most = context + (limit - 1) * stride if limit is not None else None
        if most is not None and len(tokens) > most:  # the first `limit` windows: cut the text where token `most` ends
            text = text[: self._text_end(scorer, text, most)]
            tokens = scorer.encode_document(text)
        [(log_likelihood, num_tokens)] = score_documents(
            scorer, [tokens], context=context, stride=stride, prefix_token=scorer.prefix_token_id, desc=self.name
        )
        bits = -log_likelihood / math.log(2)
        n_bytes = len(text.encode("utf-8"))
        return {
            self.metric_name: bits / n_bytes,
            "token_perplexity": 2 ** (bits / num_tokens),
            "n": float(n_bytes),
            "tokens": float(num_tokens),
            "context": float(context),
            "stride": float(stride),
        }

    def load_text(self, data: str, test_bytes: int) -> str:
        """The text of the test split: the file's last ``test_bytes`` bytes (all of it for 0), decoded exactly."""
        raw = read_corpus(self.name, resolve_path(self.name, data))
        offset = max(0, len(raw) - test_bytes) if test_bytes else 0
        text, head, tail = decode_split(self.name, raw[offset:], offset=offset)
        logger.info(
            "%s: scoring bytes %d to %d of %d%s",
            self.name,
            offset + head,
            len(raw) - tail,
            len(raw),
            f" ({head} continuation bytes of a character cut by the split and {tail} bytes of an incomplete last "
            "character are not scored)"
            if head or tail
            else "",
        )
        if not text:
            raise DataError(f"{self.name}: {data} holds no text to score")
        return text

    def _text_end(self, scorer: LoglikelihoodScorer, text: str, num_tokens: int) -> int:
        """The character offset where the document's first ``num_tokens`` tokens end."""
        try:
            offsets = scorer.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
        except (NotImplementedError, ValueError, KeyError) as err:
            raise DataError(
                f"{self.name}: --limit needs a tokenizer that reports character offsets (a fast tokenizer); "
                f"{type(scorer.tokenizer).__name__} does not ({err}); run without --limit"
            ) from err
        return int(offsets[min(num_tokens, len(offsets)) - 1][1])


class Enwik8(CharacterLevel):
    name: ClassVar[str] = "enwik8"
    summary: ClassVar[str] = "enwik8 test (last 5 MB of the 100 MB file): bits per byte; data must be given"
    metric_name: ClassVar[str] = "bits_per_byte"


class Text8(CharacterLevel):
    name: ClassVar[str] = "text8"
    summary: ClassVar[str] = "text8 test (last 5 M characters): bits per character; data must be given"
    metric_name: ClassVar[str] = "bits_per_char"

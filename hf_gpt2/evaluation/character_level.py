"""enwik8 and text8: compression-style language modelling on the first 100 MB of English Wikipedia.

enwik8 is raw XML/UTF-8 bytes and is reported in bits per byte; text8 is the same text reduced to lowercase letters
and spaces and is reported in bits per character. There is no Hub source: pass the file (``enwik8``, ``text8`` or
their ``.zip`` from http://mattmahoney.net/dc/) with ``--data enwik8=PATH``. For the full 100,000,000-byte files the
standard test split (the last 5,000,000 bytes) is scored; any other file is scored whole.
"""

from __future__ import annotations

import logging
import math
import zipfile
from pathlib import Path
from typing import ClassVar

from hf_gpt2.errors import DataError
from hf_gpt2.evaluation.base import EvalOptions, Task, score_documents, window_settings
from hf_gpt2.evaluation.scoring import LoglikelihoodScorer, rolling_windows
from hf_gpt2.evaluation.sources import resolve_path

logger = logging.getLogger(__name__)

FULL_SIZE = 100_000_000
TEST_SIZE = 5_000_000


def read_corpus(task: str, path: Path) -> bytes:
    """The bytes of a corpus file, or of the single file inside a ``.zip``."""
    if path.suffix != ".zip":
        return path.read_bytes()
    with zipfile.ZipFile(path) as archive:
        members = [m for m in archive.namelist() if not m.endswith("/")]
        if len(members) != 1:
            raise DataError(f"{task}: {path} should hold one file, found {members}")
        return archive.read(members[0])


class CharacterLevel(Task):
    """bits per byte (or character) of a whole corpus file, scored with rolling windows."""

    metric_name: ClassVar[str]

    def run(
        self, scorer: LoglikelihoodScorer, data: str | None, *, limit: int | None, options: EvalOptions
    ) -> dict[str, float]:
        if data is None:
            raise DataError(
                f"{self.name} has no Hub source; download http://mattmahoney.net/dc/{self.name}.zip and pass "
                f"--data {self.name}=PATH"
            )
        raw = read_corpus(self.name, resolve_path(self.name, data))
        if len(raw) == FULL_SIZE:
            logger.info("%s: scoring the standard test split, the last %d bytes", self.name, TEST_SIZE)
            raw = raw[-TEST_SIZE:]
        text = raw.decode("utf-8", errors="replace")
        context, stride = window_settings(scorer, options, self.name)
        tokens = scorer.encode(text)
        n_bytes = len(raw)
        if limit is not None and len(rolling_windows(tokens, context=context, stride=stride, prefix_token=0)) > limit:
            tokens = tokens[: context + (limit - 1) * stride]
            n_bytes = len(scorer.tokenizer.decode(tokens).encode("utf-8"))
        [(log_likelihood, num_tokens)] = score_documents(
            scorer, [tokens], context=context, stride=stride, prefix_token=scorer.eot_token_id, desc=self.name
        )
        bits = -log_likelihood / math.log(2)
        return {
            self.metric_name: bits / n_bytes,
            "token_perplexity": 2 ** (bits / num_tokens),
            "n": float(n_bytes),
            "tokens": float(num_tokens),
        }


class Enwik8(CharacterLevel):
    name: ClassVar[str] = "enwik8"
    summary: ClassVar[str] = "enwik8 test (last 5 MB of the 100 MB file): bits per byte; data must be given"
    metric_name: ClassVar[str] = "bits_per_byte"


class Text8(CharacterLevel):
    name: ClassVar[str] = "text8"
    summary: ClassVar[str] = "text8 test (last 5 M characters): bits per character; data must be given"
    metric_name: ClassVar[str] = "bits_per_char"

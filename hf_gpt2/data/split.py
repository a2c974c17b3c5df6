"""The train/val split: by document, deterministic and evenly spaced, the same for prepare, streaming and the BPE.

Documents 0, ⌈1/f⌉, ... (f = ``data.val_fraction``) go to val. A source of a single document (one text file, say
tiny Shakespeare) would then have nothing to train on, so :func:`split_lone_document` cuts it in two: its last f of
characters, from a line break, is held out for validation and the rest trains, as nanoGPT splits one file.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable, Iterator

import numpy as np

logger = logging.getLogger(__name__)


def val_mask(start: int, count: int, val_fraction: float) -> np.ndarray:
    """Return which of documents ``start .. start+count-1`` belong to val: evenly spaced, document 0 always."""
    index = np.arange(start, start + count, dtype=np.float64)
    offset = 1.0 - val_fraction
    return np.floor((index + 1) * val_fraction + offset) > np.floor(index * val_fraction + offset)


def split_lone_document(documents: Iterable[str], val_fraction: float) -> Iterator[str]:
    """``documents`` as they are, unless there is exactly one: then its tail (for val, document 0) and its head.

    The tail is about the last ``val_fraction`` of the characters, starting after the line break (else the space)
    nearest to that point, so no line is cut in two when there are lines; :func:`val_mask` puts the first piece in
    val and the second in train. A document too short to cut (one character) stays whole.
    """
    documents = iter(documents)
    first = list(itertools.islice(documents, 2))
    if len(first) != 1:
        yield from first
        yield from documents
        return
    pieces = cut_for_validation(first[0], val_fraction)
    if pieces is None:
        yield first[0]
        return
    head, tail = pieces
    logger.info(
        "the source is one document: its last %s of %s characters are held out for validation "
        "(data.val_fraction=%s), the rest trains",
        f"{len(tail):,}",
        f"{len(head) + len(tail):,}",
        val_fraction,
    )
    yield tail
    yield head


def cut_for_validation(text: str, val_fraction: float) -> tuple[str, str] | None:
    """(head, tail) of ``text``, the tail about ``val_fraction`` of it (between half and twice that): starting after
    the line break nearest to that point, else the nearest space, else at the exact character. None when a piece
    would be empty."""
    tail_length = max(1, round(len(text) * val_fraction))
    target = len(text) - tail_length
    longest, shortest = min(len(text) - 1, 2 * tail_length), max(1, tail_length // 2)
    for separator in ("\n", " "):
        before, after = text.rfind(separator, 0, target), text.find(separator, target)
        starts = [found + 1 for found in (before, after) if found >= 0]
        starts = [start for start in starts if shortest <= len(text) - start <= longest]
        if starts:
            target = min(starts, key=lambda start: abs(start - target))
            break
    if not 0 < target < len(text):
        return None
    return text[:target], text[target:]

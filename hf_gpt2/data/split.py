"""The train/val split: by document, deterministic and evenly spaced, the same for prepare, streaming and the BPE."""

from __future__ import annotations

import numpy as np


def val_mask(start: int, count: int, val_fraction: float) -> np.ndarray:
    """Return which of documents ``start .. start+count-1`` belong to val: evenly spaced, document 0 always."""
    index = np.arange(start, start + count, dtype=np.float64)
    offset = 1.0 - val_fraction
    return np.floor((index + 1) * val_fraction + offset) > np.floor(index * val_fraction + offset)

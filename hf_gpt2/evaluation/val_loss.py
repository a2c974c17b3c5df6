"""Validation loss on a prepared token-shard folder (what ``hf-gpt2 prepare`` and training write).

The folder holds ``meta.json`` (``{"splits": {"val": {"num_tokens": N, "shards": [...]}}, "dtype": "uint16", ...}``)
and raw little-endian shards, read here with ``numpy.memmap``. The split's tokens are scored as one stream in
windows of the model's context (or ``--context``), each token once: the mean cross-entropy is the training loop's
validation loss, over the whole split instead of a sample of batches.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from hf_gpt2.errors import DataError
from hf_gpt2.evaluation.base import EvalOptions, Task, window_settings
from hf_gpt2.evaluation.metrics import TokenLossMetric
from hf_gpt2.evaluation.scoring import LoglikelihoodScorer, rolling_windows
from hf_gpt2.evaluation.sources import resolve_path

logger = logging.getLogger(__name__)

SPLIT = "val"


def read_token_split(directory: Path, split: str = SPLIT) -> tuple[np.ndarray, dict[str, Any]]:
    """All tokens of one split of a prepared shard folder, and its meta.json."""
    meta_path = directory / "meta.json"
    if not meta_path.is_file():
        raise DataError(f"val_loss: {directory} has no meta.json; point --data val_loss= at a prepared shard folder")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    splits = meta.get("splits", {})
    if split not in splits:
        raise DataError(f"val_loss: {meta_path} has no {split!r} split; it has {sorted(splits)}")
    dtype = np.dtype(meta.get("dtype", "uint16")).newbyteorder("<")
    parts = []
    for name in splits[split]["shards"]:
        shard = directory / name
        if not shard.is_file():
            raise DataError(f"val_loss: shard {shard} listed in meta.json is missing")
        parts.append(np.memmap(shard, dtype=dtype, mode="r"))
    tokens = np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)
    expected = splits[split].get("num_tokens")
    if expected is not None and int(expected) != len(tokens):
        raise DataError(f"val_loss: meta.json says {expected} {split} tokens, the shards hold {len(tokens)}")
    return tokens, meta


class ValLoss(Task):
    name: ClassVar[str] = "val_loss"
    summary: ClassVar[str] = "mean cross-entropy on the 'val' split of a prepared token-shard folder"

    def run(
        self, scorer: LoglikelihoodScorer, data: str | None, *, limit: int | None, options: EvalOptions
    ) -> dict[str, float]:
        if data is None:
            raise DataError("val_loss needs a prepared token-shard folder: --data val_loss=DIR (with meta.json)")
        tokens, meta = read_token_split(resolve_path(self.name, data))
        vocab_size = int(scorer.model.config.vocab_size)
        if len(tokens) < 2:
            raise DataError(f"val_loss: the {SPLIT!r} split of {data} has {len(tokens)} tokens; need at least 2")
        if int(tokens.max()) >= vocab_size:
            raise DataError(
                f"val_loss: {data} holds token id {int(tokens.max())} but the model's vocab_size is {vocab_size}; "
                f"the shards were made with another tokenizer ({meta.get('tokenizer')!r})"
            )
        context, stride = window_settings(scorer, options, self.name)
        windows = rolling_windows(tokens, context=context, stride=stride, prefix_token=None)  # views, no copies
        windows = windows if limit is None else windows[:limit]
        results = scorer.loglikelihood(windows, desc=self.name)
        metrics = TokenLossMetric().compute(
            log_likelihood=[r.log_likelihood for r in results], num_tokens=[r.num_tokens for r in results]
        )
        return {**metrics, "n": float(sum(r.num_tokens for r in results))}

"""The token-window loader: (B, block_size + 1) batches from prepared shards, in a seed-fixed, resumable order.

A split of N tokens holds W = N // T - 1 windows of T + 1 tokens (T = block_size), starting at ``shift + k·T``.
Each epoch draws its own ``shift`` in [0, T) and its own permutation of the W windows from ``(seed, epoch)``, so
epochs see different token alignments. The windows of all epochs form one stream; an optimizer step's micro-batch
on process p of P takes stream entries ``[pos + p·B, pos + (p+1)·B)`` and every process then advances ``pos`` by
B·P. The processes therefore read disjoint slices, and the position is one integer that is the same on every
process: ``state_dict()`` saves it, ``load_state_dict()`` restores the exact continuation (also on a different
number of processes, since ``pos`` counts windows consumed over all processes).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from hf_gpt2.data.prepare import PreparedData
from hf_gpt2.errors import DataError

STATE_VERSION = 1


class TokenWindowLoader:
    """Iterate forever over (micro_batch_size, block_size + 1) int64 tensors of one split.

    ``batch[:, :-1]`` is the input and ``batch[:, 1:]`` the target.

    Args:
        prepared: the output of :func:`hf_gpt2.data.prepare_token_shards`.
        split: ``train`` or ``val``.
        block_size: tokens of input per row (T).
        micro_batch_size: rows per batch on this process (B).
        seed: fixes the window order of every epoch.
        process_index: this process's rank.
        num_processes: how many processes read the split together.

    Raises:
        DataError: if the split is too small for one window of block_size + 1 tokens.
    """

    def __init__(
        self,
        prepared: PreparedData,
        split: str,
        block_size: int,
        micro_batch_size: int,
        seed: int,
        process_index: int = 0,
        num_processes: int = 1,
    ) -> None:
        if not 0 <= process_index < num_processes:
            raise ValueError(f"process_index={process_index} must be in [0, num_processes={num_processes})")
        self.prepared, self.split = prepared, split
        self.block_size, self.micro_batch_size, self.seed = block_size, micro_batch_size, seed
        self.process_index, self.num_processes = process_index, num_processes
        self._tokens = _ShardedTokens(prepared, split)
        self.num_windows = len(self._tokens) // block_size - 1
        if self.num_windows < 1:
            raise DataError(
                f"the {split} split of {prepared.directory} has {len(self._tokens):,} tokens, fewer than the "
                f"2 × data.block_size = {2 * block_size} it needs; lower data.block_size, add data, or raise "
                f"data.val_fraction (for val)"
            )
        self.position = 0
        self._epoch_cache: tuple[int, int, np.ndarray] | None = None

    # -- iteration -----------------------------------------------------------------------------------------------

    def __iter__(self) -> Iterator[torch.Tensor]:
        return self

    def __next__(self) -> torch.Tensor:
        first = self.position + self.process_index * self.micro_batch_size
        batch = self._batch_at(first)
        self.position += self.micro_batch_size * self.num_processes
        return batch

    def val_batches(self, num_batches: int) -> Iterator[torch.Tensor]:
        """Yield the same ``num_batches`` batches every time (the first ones of the stream); the position is kept.

        With several processes each yields its own slice of the same global batches, as in training.
        """
        for step in range(num_batches):
            global_start = step * self.micro_batch_size * self.num_processes
            yield self._batch_at(global_start + self.process_index * self.micro_batch_size)

    def tiled_batches(self) -> Iterator[torch.Tensor]:
        """Every window of the split once, in order, with no shift: windows start at 0, T, 2T, ... while T + 1
        tokens fit, so they cover the whole split but its last few tokens. They are cut into batches of B rows (the
        last one may be shorter), and process p of P yields batches p, p + P, ...; the position is kept.
        """
        num_windows = (len(self._tokens) - 1) // self.block_size
        rows = self.micro_batch_size
        for first in range(self.process_index * rows, num_windows, rows * self.num_processes):
            starts = range(first * self.block_size, min(first + rows, num_windows) * self.block_size, self.block_size)
            windows = [self._tokens.read(start, self.block_size + 1) for start in starts]
            yield torch.from_numpy(np.stack(windows).astype(np.int64))  # (b, T + 1)

    @property
    def epoch(self) -> float:
        """Epochs consumed so far over all processes (fractional)."""
        return self.position / self.num_windows

    # -- state -----------------------------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Return the position and what it depends on (plain ints and strings, JSON-able)."""
        return {
            "version": STATE_VERSION,
            "split": self.split,
            "position": self.position,
            "seed": self.seed,
            "block_size": self.block_size,
            "num_tokens": len(self._tokens),
            "fingerprint": self.prepared.meta.get("fingerprint"),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue exactly where ``state`` was saved.

        Raises:
            DataError: if the state belongs to other data, another seed or another block size.
        """
        mine = self.state_dict()
        for key in ("split", "seed", "block_size", "num_tokens", "fingerprint"):
            if state.get(key) != mine[key]:
                raise DataError(
                    f"the saved data position is for {key}={state.get(key)!r}, but this run has {key}={mine[key]!r}; "
                    "resume with the recipe the checkpoint was written with"
                )
        self.position = int(state["position"])

    # -- reading ---------------------------------------------------------------------------------------------------

    def _batch_at(self, stream_index: int) -> torch.Tensor:
        rows = [self._window(stream_index + i) for i in range(self.micro_batch_size)]
        return torch.from_numpy(np.stack(rows).astype(np.int64))  # (B, T + 1)

    def _window(self, stream_index: int) -> np.ndarray:
        epoch, index = divmod(stream_index, self.num_windows)
        shift, order = self._epoch_order(epoch)
        start = shift + int(order[index]) * self.block_size
        return self._tokens.read(start, self.block_size + 1)

    def _epoch_order(self, epoch: int) -> tuple[int, np.ndarray]:
        if self._epoch_cache is None or self._epoch_cache[0] != epoch:
            rng = np.random.default_rng([self.seed, epoch])
            shift = int(rng.integers(self.block_size))
            self._epoch_cache = (epoch, shift, rng.permutation(self.num_windows))
        return self._epoch_cache[1], self._epoch_cache[2]


class _ShardedTokens:
    """The shards of one split as a single read-only token sequence (memory-mapped)."""

    def __init__(self, prepared: PreparedData, split: str) -> None:
        dtype = prepared.dtype
        self._maps = [np.memmap(p, dtype=dtype, mode="r") for p in prepared.shard_paths(split) if p.stat().st_size]
        self._starts = np.cumsum([0] + [len(m) for m in self._maps])

    def __len__(self) -> int:
        return int(self._starts[-1])

    def read(self, start: int, length: int) -> np.ndarray:
        shard = int(np.searchsorted(self._starts, start, side="right")) - 1
        offset = start - int(self._starts[shard])
        piece = self._maps[shard][offset : offset + length]
        if len(piece) == length:
            return np.asarray(piece)
        pieces = [np.asarray(piece)]  # the window crosses into the next shard(s)
        while sum(len(p) for p in pieces) < length:
            shard += 1
            pieces.append(np.asarray(self._maps[shard][: length - sum(len(p) for p in pieces)]))
        return np.concatenate(pieces)

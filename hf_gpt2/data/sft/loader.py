"""SFT batches for the training loop: packed rows or padded rows, in a seed-fixed, resumable order.

Packed rows hold several samples, ``position_ids`` restarting at 0 for each and no ``attention_mask``: transformers'
``create_causal_mask`` then blocks attention across samples, but only when the model runs with ``use_cache=False``.
Padded rows have an ``attention_mask`` and right padding.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

from hf_gpt2.data.sft.prepare import PreparedSFT
from hf_gpt2.data.sft.template import IGNORE_INDEX
from hf_gpt2.errors import DataError


def pack_examples(
    examples: Sequence[tuple[np.ndarray, np.ndarray]], length: int, pad_id: int
) -> dict[str, torch.Tensor]:
    """One packed row of ``length`` tokens: samples back to back, position ids restarting at 0 for each sample.

    The tail is padding (labels -100, its own position run), so ``create_causal_mask`` sees it as another sample.
    """
    ids = np.full(length, pad_id, dtype=np.int64)
    labels = np.full(length, IGNORE_INDEX, dtype=np.int64)
    positions = np.zeros(length, dtype=np.int64)
    cursor = 0
    for sample_ids, sample_labels in examples:
        n = len(sample_ids)
        assert cursor + n <= length, "pack_examples got more tokens than fit"
        ids[cursor : cursor + n], labels[cursor : cursor + n] = sample_ids, sample_labels
        positions[cursor : cursor + n] = np.arange(n)
        cursor += n
    positions[cursor:] = np.arange(length - cursor)
    return {
        "input_ids": torch.from_numpy(ids),
        "labels": torch.from_numpy(labels),
        "position_ids": torch.from_numpy(positions),
    }


def pad_examples(examples: Sequence[tuple[np.ndarray, np.ndarray]], pad_id: int) -> dict[str, torch.Tensor]:
    """A right-padded batch ``{input_ids, labels, attention_mask}`` as long as its longest sample."""
    width = max(len(ids) for ids, _ in examples)
    batch = {
        "input_ids": torch.full((len(examples), width), pad_id, dtype=torch.long),
        "labels": torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long),
        "attention_mask": torch.zeros((len(examples), width), dtype=torch.long),
    }
    for row, (ids, labels) in enumerate(examples):
        batch["input_ids"][row, : len(ids)] = torch.from_numpy(np.asarray(ids))
        batch["labels"][row, : len(ids)] = torch.from_numpy(np.asarray(labels))
        batch["attention_mask"][row, : len(ids)] = 1
    return batch


class SFTLoader:
    """Endless seed-ordered SFT batches; the same constructor and state contract as ``TokenWindowLoader``.

    The examples are shuffled once per epoch (order fixed by ``seed`` and the epoch). Every process walks the same
    global sequence of rows and takes its own ``micro_batch_size`` rows of each ``num_processes × micro_batch_size``,
    so ``state_dict()`` (epoch and position in that epoch's order) is identical on every process and a resumed run
    continues with exactly the batches it would have seen. Packing comes from ``prepared.meta["packing"]``.
    """

    def __init__(
        self,
        prepared: PreparedSFT,
        split: str,
        block_size: int,
        micro_batch_size: int,
        seed: int,
        process_index: int = 0,
        num_processes: int = 1,
    ) -> None:
        self.data = prepared.split(split)
        self.split_name = split
        self.block_size = block_size
        self.micro_batch_size = micro_batch_size
        self.seed = seed
        self.process_index = process_index
        self.num_processes = num_processes
        self.packing = bool(prepared.meta["packing"])
        self.pad_id = int(prepared.meta["pad_id"])
        lengths = np.diff(self.data.offsets)
        if lengths.max() > block_size:
            raise DataError(
                f"SFT examples were prepared with up to {int(lengths.max())} tokens but block_size is {block_size}; "
                "prepare again with this data.block_size"
            )
        self.epoch, self.cursor = 0, 0
        self._order = self._order_for(0)

    def _order_for(self, epoch: int) -> np.ndarray:
        if self.split_name != "train":
            return np.arange(len(self.data))  # evaluation: the same examples, in file order, every time
        return np.random.default_rng([self.seed, epoch]).permutation(len(self.data))

    def _take(self) -> tuple[np.ndarray, np.ndarray]:
        if self.cursor == len(self._order):
            self.epoch, self.cursor = self.epoch + 1, 0
            self._order = self._order_for(self.epoch)
        example = self.data.example(int(self._order[self.cursor]))
        self.cursor += 1
        return example

    def _peek_length(self) -> int:
        if self.cursor == len(self._order):
            return int(np.diff(self.data.offsets)[self._order_for(self.epoch + 1)[0]])
        i = int(self._order[self.cursor])
        return int(self.data.offsets[i + 1] - self.data.offsets[i])

    def _next_row(self) -> list[tuple[np.ndarray, np.ndarray]]:
        row = [self._take()]
        used = len(row[0][0])
        while self.packing and used + self._peek_length() <= self.block_size:
            row.append(self._take())
            used += len(row[-1][0])
        return row

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        return self

    def __next__(self) -> dict[str, torch.Tensor]:
        """The next micro-batch of this process: packed ``(B, block_size)`` rows or padded ``(B, longest)`` rows."""
        rows = [self._next_row() for _ in range(self.micro_batch_size * self.num_processes)]
        mine = rows[self.process_index * self.micro_batch_size : (self.process_index + 1) * self.micro_batch_size]
        if not self.packing:
            return pad_examples([row[0] for row in mine], self.pad_id)
        packed = [pack_examples(row, self.block_size, self.pad_id) for row in mine]
        return {key: torch.stack([p[key] for p in packed]) for key in packed[0]}

    def state_dict(self) -> dict[str, Any]:
        """Where the loader stands: epoch and position in that epoch's order (the same on every process)."""
        return {"split": self.split_name, "epoch": self.epoch, "cursor": self.cursor, "num_examples": len(self.data),
                "seed": self.seed, "packing": self.packing}  # fmt: skip

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a :meth:`state_dict`.

        Raises:
            DataError: if it was saved for other data (another number of examples, seed or packing).
        """
        mine = self.state_dict()
        for key in ("num_examples", "seed", "packing"):
            if state.get(key) != mine[key]:
                raise DataError(
                    f"the checkpoint's SFT loader state has {key}={state.get(key)!r} but this run has {mine[key]!r}; "
                    "resume with the recipe (data, seed) the checkpoint was trained with"
                )
        self.epoch, self.cursor = int(state["epoch"]), int(state["cursor"])
        self._order = self._order_for(self.epoch)

"""Streaming mode (``data.streaming: true``): tokenize and pack on the fly, with no prepare step.

Documents are read in order (a Hub source as a streaming ``IterableDataset``), tokenized with EOS after each, and
packed into windows of block_size + 1 tokens; consecutive windows share one token, as in the prepared loader.
The train/val split is by document with the same evenly spaced rule as prepare (:func:`val_mask`), counted over the
documents this process reads. With several processes, each reads its own documents (a Hub dataset through
``datasets.distributed.split_dataset_by_node``, local sources every P-th document), so their batches are disjoint.

``state_dict()`` holds the dataset's own ``state_dict()`` (or, for local sources, the document count), the epoch
and the tokens already read but not yet used, so ``load_state_dict()`` continues exactly. Order is not shuffled:
the data's own order is used, as streamed pretraining corpora are already shuffled. When a source ends, the next
epoch starts it again.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from datasets.distributed import split_dataset_by_node

from hf_gpt2.data.sources import (
    DocumentSource,
    hub_row_texts,
    iter_documents,
    load_hub_dataset,
    readable,
    resolve_source,
)
from hf_gpt2.data.split import split_lone_document, val_mask
from hf_gpt2.errors import DataError
from hf_gpt2.recipe import Recipe, effective_max_documents
from hf_gpt2.tokenization import TokenizerSpec, batch_encoder, tokenizer_spec

STATE_VERSION = 1


@dataclasses.dataclass(frozen=True)
class StreamingData:
    """Streaming mode's stand-in for prepared token shards: the recipe, and ``meta`` as prepared data has it."""

    recipe: Recipe

    @property
    def meta(self) -> dict[str, Any]:
        return {"vocab_size": tokenizer_spec(self.recipe).vocab_size}


class StreamingTokenLoader:
    """Iterate forever over (micro_batch_size, block_size + 1) int64 tensors packed from a document stream.

    Args:
        recipe: a :class:`hf_gpt2.recipe.Recipe` (its ``data``, ``tokenizer`` and ``run.dev`` are used).
        split: ``train`` or ``val``.
        block_size: tokens of input per row (T).
        micro_batch_size: rows per batch on this process (B).
        process_index: this process's rank.
        num_processes: how many processes read the source together.
    """

    def __init__(
        self,
        recipe: Recipe,
        split: str,
        block_size: int,
        micro_batch_size: int,
        process_index: int = 0,
        num_processes: int = 1,
    ) -> None:
        if split not in ("train", "val"):
            raise ValueError(f"split must be 'train' or 'val', got {split!r}")
        self.recipe, self.split = recipe, split
        self.block_size, self.micro_batch_size = block_size, micro_batch_size
        self.process_index, self.num_processes = process_index, num_processes
        self.source: DocumentSource = resolve_source(recipe.data)
        if self.source.kind == "hub":
            self.source = dataclasses.replace(self.source, streaming=True)
        self.tokenizer: TokenizerSpec = tokenizer_spec(recipe)
        self.val_fraction = recipe.data.val_fraction
        self.max_documents = effective_max_documents(recipe)
        encode = batch_encoder(self.tokenizer)
        self._encode = lambda text: encode([text])[0]
        self.vocab_size = self.tokenizer.vocab_size
        """Tokenizer vocabulary size (what ``prepared.meta["vocab_size"]`` is for the prepared loader)."""
        self.epoch = 0
        self.documents_read = 0  # this process's documents (both splits) read in this epoch
        self._buffer: list[int] = []
        self._dataset: Any = None
        self._documents: Iterator[str] | None = None

    @classmethod
    def from_data(
        cls,
        data: StreamingData,
        split: str,
        block_size: int,
        micro_batch_size: int,
        seed: int,
        process_index: int = 0,
        num_processes: int = 1,
    ) -> StreamingTokenLoader:
        """Build it with the prepared loaders' signature (``seed`` is unused: a stream keeps the data's own order)."""
        return cls(data.recipe, split, block_size, micro_batch_size, process_index, num_processes)

    # -- iteration -----------------------------------------------------------------------------------------------

    def __iter__(self) -> Iterator[torch.Tensor]:
        return self

    def __next__(self) -> torch.Tensor:
        B, T = self.micro_batch_size, self.block_size
        while len(self._buffer) < B * T + 1:
            self._buffer.extend(self._next_document_tokens())
        rows = np.array([self._buffer[i * T : i * T + T + 1] for i in range(B)], dtype=np.int64)  # (B, T + 1)
        del self._buffer[: B * T]
        return torch.from_numpy(rows)

    def val_batches(self, num_batches: int) -> Iterator[torch.Tensor]:
        """Yield the first ``num_batches`` batches of this split from a fresh stream (the same every time)."""
        fresh = StreamingTokenLoader(
            self.recipe, self.split, self.block_size, self.micro_batch_size, self.process_index, self.num_processes
        )
        yield from itertools.islice(fresh, num_batches)

    # -- state -----------------------------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Return the exact stream position (JSON-able: ints, lists and the dataset's own state)."""
        dataset_state = self._dataset.state_dict() if self._dataset is not None else None
        return {
            "version": STATE_VERSION,
            "split": self.split,
            "block_size": self.block_size,
            "source": self.source.spec,
            "epoch": self.epoch,
            "documents_read": self.documents_read,
            "buffer": list(self._buffer),
            "dataset": dataset_state,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue exactly where ``state`` was saved.

        Raises:
            DataError: if the state belongs to another split, source or block size.
        """
        for key, mine in (("split", self.split), ("block_size", self.block_size), ("source", self.source.spec)):
            if state.get(key) != mine:
                raise DataError(
                    f"the saved streaming position is for {key}={state.get(key)!r}, but this run has {key}={mine!r}; "
                    "resume with the recipe the checkpoint was written with"
                )
        self.epoch, self.documents_read = int(state["epoch"]), int(state["documents_read"])
        self._buffer = [int(t) for t in state["buffer"]]
        self._start_epoch(dataset_state=state.get("dataset"), skip=self.documents_read)

    # -- reading ---------------------------------------------------------------------------------------------------

    def _next_document_tokens(self) -> list[int]:
        """Return the tokens + EOS of this split's next document, starting a new epoch when the source ends."""
        while True:
            if self._documents is None:
                self._start_epoch()
            for text in self._documents:
                index = self.documents_read
                self.documents_read += 1
                if bool(val_mask(index, 1, self.val_fraction)[0]) == (self.split == "val"):
                    return [*self._encode(text), self.tokenizer.eos_id]
            if self._split_was_empty():
                raise DataError(
                    f"data.source={self.source.spec!r} gives process {self.process_index} no {self.split} documents "
                    "to stream; add data, raise data.val_fraction (val), or use fewer processes"
                )
            self.epoch, self.documents_read, self._documents, self._dataset = self.epoch + 1, 0, None, None

    def _split_was_empty(self) -> bool:
        mask = val_mask(0, self.documents_read, self.val_fraction)
        return not (mask.any() if self.split == "val" else (~mask).any())

    def _start_epoch(self, dataset_state: dict[str, Any] | None = None, skip: int = 0) -> None:
        """Open the source at the start of an epoch, or ``skip`` documents in (a Hub dataset: at its saved state)."""
        if self.source.kind == "hub":
            # max_documents counts this process's documents: each process reads its own part of the dataset.
            limit = None if self.max_documents is None else -(-self.max_documents // self.num_processes)
            self._dataset = self._hub_dataset()
            if dataset_state is not None:
                self._dataset.load_state_dict(dataset_state)
            elif skip:
                raise DataError("a streaming position past the start needs the dataset's saved state; it is missing")
            documents = (text for text in readable(hub_row_texts(self._dataset, self.source), self.source) if text)
            self._documents = documents if limit is None else itertools.islice(documents, max(0, limit - skip))
            return
        documents = split_lone_document(iter_documents(self.source, self.max_documents), self.val_fraction)
        mine = itertools.islice(documents, self.process_index, None, self.num_processes)
        self._documents = itertools.islice(mine, skip, None)

    def _hub_dataset(self) -> Any:
        dataset = load_hub_dataset(self.source)
        if self.num_processes > 1:
            dataset = split_dataset_by_node(dataset, rank=self.process_index, world_size=self.num_processes)
        return dataset

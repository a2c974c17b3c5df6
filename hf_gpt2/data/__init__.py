"""Data: sources (built-in corpus, local files, Hub datasets) → token shards (``prepare``) → window loader.

``prepare_token_shards(recipe)`` writes (or reuses) ``data.cache_dir/<fingerprint>/`` with ``meta.json`` and raw
uint16 shards; ``TokenWindowLoader(prepared, "train", block_size, micro_batch_size, seed, process_index,
num_processes)`` reads them as (B, block_size + 1) int64 tensors in a seed-fixed, resumable order. With
``data.streaming: true`` there is no prepare step: ``StreamingTokenLoader(recipe, split, block_size, micro_batch_size,
process_index, num_processes)`` tokenizes and packs on the fly and resumes from its ``state_dict``. SFT data lives in
``hf_gpt2.data.sft``. The loaders (which import torch) are imported on first use, so ``hf-gpt2 prepare`` starts fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hf_gpt2.data.prepare import PreparedData, load_prepared, prepare_token_shards
from hf_gpt2.data.sources import DocumentSource, iter_documents, kjv_documents, resolve_source

if TYPE_CHECKING:
    from hf_gpt2.data.loader import TokenWindowLoader
    from hf_gpt2.data.streaming import StreamingTokenLoader

__all__ = [
    "DocumentSource",
    "PreparedData",
    "StreamingTokenLoader",
    "TokenWindowLoader",
    "iter_documents",
    "kjv_documents",
    "load_prepared",
    "prepare_token_shards",
    "resolve_source",
]


def __getattr__(name: str) -> Any:
    if name == "TokenWindowLoader":
        from hf_gpt2.data.loader import TokenWindowLoader

        return TokenWindowLoader
    if name == "StreamingTokenLoader":
        from hf_gpt2.data.streaming import StreamingTokenLoader

        return StreamingTokenLoader
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""Data: sources → (a new tokenizer) → token shards → loaders, and the SFT branch.

- :mod:`~hf_gpt2.data.sources`: the built-in corpus, local files and Hub datasets, each a stream of documents;
- :mod:`~hf_gpt2.data.split`: which documents go to val (the same rule everywhere);
- :mod:`~hf_gpt2.data.prepare`: ``prepare_token_shards(recipe)`` tokenizes a source once into cached uint16 shards
  (``data.cache_dir/<fingerprint>/`` with ``meta.json``);
- :mod:`~hf_gpt2.data.loader`: ``TokenWindowLoader`` reads them as (B, block_size + 1) windows in a seed-fixed,
  resumable order;
- :mod:`~hf_gpt2.data.streaming`: ``StreamingTokenLoader`` tokenizes and packs on the fly (``data.streaming: true``);
- :mod:`~hf_gpt2.data.sft`: conversations → ids + labels trained on the assistant's turns, packed or padded.

The tokenizers themselves (OpenAI's GPT-2 BPE, Hub tokenizers, a new BPE) are in :mod:`hf_gpt2.tokenization`.
"""

"""`hf-gpt2 prepare RECIPE [section.key=value ...]`: tokenize the recipe's data into cached token shards.

Training runs the same step on start and reuses this output (keyed by a fingerprint of the source, the tokenizer and
the split settings), so preparing ahead only moves the work earlier, e.g. onto a CPU machine. The folder it prints is
also what ``hf-gpt2 eval --tasks val_loss --data val_loss=FOLDER`` scores.

With GPT-2's BPE it imports neither torch nor transformers (the process starts in well under a second instead of
several); SFT data, which needs the transformers tokenizer, loads :mod:`hf_gpt2.data.sft` by name.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from hf_gpt2.data.prepare import prepare_token_shards
from hf_gpt2.recipe import Recipe


def run(args: argparse.Namespace) -> int:
    """Prepare (or find) the shards of ``args.recipe``; print where they are and how many tokens each split holds."""
    recipe: Recipe = args.recipe
    if recipe.data.format == "sft":
        return _prepare_sft(recipe, args.force)
    prepared = prepare_token_shards(recipe, force=args.force)
    splits = prepared.meta["splits"]
    status = "reused" if prepared.reused else "prepared"
    folder = prepared.directory
    lines = [f"{status} {folder}"]
    for name, split in splits.items():
        lines.append(
            f"  {name:5s} {split['num_tokens']:>14,} tokens  {split['num_documents']:>10,} documents  "
            f"{len(split['shards'])} shard(s)"
        )
    lines.append(f"  tokenizer {prepared.meta['tokenizer']} (eos {prepared.meta['eos_id']}, {prepared.meta['dtype']})")
    lines.append(f"  val loss of a model: hf-gpt2 eval --model MODEL --tasks val_loss --data val_loss={folder}")
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


def _prepare_sft(recipe: Recipe, force: bool) -> int:
    """SFT data (``data.format: sft``): tokenized with the tokenizer training uses, so training reuses the cache."""
    tokenizer = importlib.import_module("hf_gpt2.tokenization").load_tokenizer(recipe)
    prepared = importlib.import_module("hf_gpt2.data.sft").prepare_sft_data(recipe, tokenizer, force=force)
    lines = [f"{'reused' if prepared.reused else 'prepared'} {prepared.directory}"]
    for name, split in prepared.meta["splits"].items():
        lines.append(f"  {name:5s} {split.get('num_tokens', 0):>14,} tokens  {split['num_examples']:>10,} examples")
    sys.stdout.write("\n".join(lines) + "\n")
    return 0

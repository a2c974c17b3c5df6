"""`hf-gpt2 prepare RECIPE [section.key=value ...]`: tokenize the recipe's data into cached token shards.

Training runs the same step on start and reuses this output (keyed by a fingerprint of the source, the tokenizer and
the split settings), so preparing ahead only moves the work earlier, e.g. onto a CPU machine.
"""

from __future__ import annotations

import argparse
import sys

HELP = "tokenize a recipe's data into train/val token shards (reused by later runs)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the recipe path, the overrides and --force."""
    from hf_gpt2.cli import add_recipe_arguments

    add_recipe_arguments(parser, "data.num_proc=8 data.max_documents=1000 data.cache_dir=/scratch/data")
    parser.add_argument("--force", action="store_true", help="prepare again even if a valid cache exists")


def run(args: argparse.Namespace) -> int:
    """Prepare (or find) the shards and print where they are and how many tokens each split holds."""
    from hf_gpt2.data import prepare_token_shards
    from hf_gpt2.recipe import load_recipe

    recipe = load_recipe(args.recipe, args.overrides)
    if recipe.data.format == "sft":
        return _prepare_sft(recipe, args.force)
    prepared = prepare_token_shards(recipe, force=args.force)
    splits = prepared.meta["splits"]
    status = "reused" if prepared.reused else "prepared"
    lines = [f"{status} {prepared.directory}"]
    for name, split in splits.items():
        lines.append(
            f"  {name:5s} {split['num_tokens']:>14,} tokens  {split['num_documents']:>10,} documents  "
            f"{len(split['shards'])} shard(s)"
        )
    lines.append(f"  tokenizer {prepared.meta['tokenizer']} (eos {prepared.meta['eos_id']}, {prepared.meta['dtype']})")
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


def _prepare_sft(recipe: object, force: bool) -> int:
    """SFT data (``data.format: sft``): tokenized with the tokenizer training uses, so training reuses the cache."""
    from hf_gpt2.data.sft import prepare_sft_data
    from hf_gpt2.training.components import load_tokenizer

    prepared = prepare_sft_data(recipe, load_tokenizer(recipe), force=force)
    lines = [f"{'reused' if prepared.reused else 'prepared'} {prepared.directory}"]
    for name, split in prepared.meta["splits"].items():
        lines.append(f"  {name:5s} {split.get('num_tokens', 0):>14,} tokens  {split['num_examples']:>10,} examples")
    sys.stdout.write("\n".join(lines) + "\n")
    return 0

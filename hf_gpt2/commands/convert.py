"""`hf-gpt2 convert`: stock GPT-2 (folder or Hub id) → hf_gpt2 release, or hf_gpt2 → stock GPT2LMHeadModel folder."""

from __future__ import annotations

import argparse
import logging

HELP = "convert between stock transformers GPT-2 (e.g. openai-community/gpt2) and hf_gpt2"
logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    direction = parser.add_mutually_exclusive_group(required=True)
    direction.add_argument(
        "--from-gpt2",
        action="store_true",
        help="SRC is a stock GPT-2 folder or Hub id; DST becomes an hf_gpt2 release",
    )
    direction.add_argument(
        "--to-gpt2", action="store_true", help="SRC is an hf_gpt2 folder; DST becomes a stock GPT2LMHeadModel folder"
    )
    parser.add_argument("src", metavar="SRC", help="model folder or Hub id")
    parser.add_argument("dst", metavar="DST", help="new output folder (must not exist or be empty)")


def run(args: argparse.Namespace) -> int:
    from hf_gpt2.convert import from_gpt2, load_causal_lm, load_tokenizer_for
    from hf_gpt2.release import save_release, save_stock_gpt2_export

    _refuse_existing(args.dst)
    if args.from_gpt2:
        model = from_gpt2(args.src)
        out, kind = save_release(model, load_tokenizer_for(args.src), args.dst), "HfGPT2ForCausalLM"
    else:
        model = load_causal_lm(args.src)
        out, kind = save_stock_gpt2_export(model, load_tokenizer_for(args.src), args.dst), "GPT2LMHeadModel"
    logger.info("wrote %s (%s, %.1fM parameters)", out, kind, model.num_parameters() / 1e6)
    return 0


def _refuse_existing(dst: str) -> None:
    from pathlib import Path

    from hf_gpt2.errors import CheckpointError

    path = Path(dst)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise CheckpointError(f"{dst} already exists; choose a new output folder (nothing was written)")

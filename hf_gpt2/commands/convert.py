"""`hf-gpt2 convert`: stock GPT-2 (folder or Hub id) → hf_gpt2 release, or hf_gpt2 → stock GPT2LMHeadModel folder."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from hf_gpt2.convert import from_gpt2, load_causal_lm, to_gpt2
from hf_gpt2.errors import CheckpointError
from hf_gpt2.release import save_release
from hf_gpt2.tokenization import load_tokenizer_for

logger = logging.getLogger(__name__)


def run(args: argparse.Namespace) -> int:
    """Convert SRC to DST in the direction asked for; DST must be new (or an empty folder)."""
    _refuse_existing(args.dst)
    if args.from_gpt2:
        model = from_gpt2(args.src)
    else:
        model = to_gpt2(load_causal_lm(args.src))
    out = save_release(model, load_tokenizer_for(args.src), args.dst)
    logger.info("wrote %s (%s, %.1fM parameters)", out, type(model).__name__, model.num_parameters() / 1e6)
    return 0


def _refuse_existing(dst: str) -> None:
    path = Path(dst)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise CheckpointError(f"{dst} already exists; choose a new output folder (nothing was written)")

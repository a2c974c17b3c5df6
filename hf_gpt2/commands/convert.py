"""`hf-gpt2 convert`: stock GPT-2 (folder or Hub id) → hf_gpt2 release, or hf_gpt2 → stock GPT2LMHeadModel folder."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from hf_gpt2.convert import from_gpt2, load_causal_lm
from hf_gpt2.errors import CheckpointError
from hf_gpt2.folders import check_writable
from hf_gpt2.release import save_release, save_stock_gpt2_export
from hf_gpt2.tokenization import load_tokenizer_for

logger = logging.getLogger(__name__)


def run(args: argparse.Namespace) -> int:
    """Convert SRC to DST in the direction asked for; DST must be new (or an empty folder)."""
    _refuse_existing(args.dst)
    check_writable(Path(args.dst), folder=True)  # a folder that cannot be written is refused before the model loads
    if args.from_gpt2:
        model = from_gpt2(args.src)
        out, kind = save_release(model, load_tokenizer_for(args.src), args.dst), "HfGPT2ForCausalLM"
    else:
        model = load_causal_lm(args.src)
        out, kind = save_stock_gpt2_export(model, load_tokenizer_for(args.src), args.dst), "GPT2LMHeadModel"
    logger.info("wrote %s (%s, %.1fM parameters)", out, kind, model.num_parameters() / 1e6)
    return 0


def _refuse_existing(dst: str) -> None:
    path = Path(dst)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise CheckpointError(f"{dst} already exists; choose a new output folder (nothing was written)")

"""`hf-gpt2 train RECIPE [section.key=value ...]`: pretrain or finetune as the recipe says (the whole pipeline)."""

from __future__ import annotations

import argparse
import logging

from hf_gpt2.pipeline import run_pipeline

logger = logging.getLogger(__name__)


def run(args: argparse.Namespace) -> int:
    """Train the loaded recipe (``args.recipe``) and log where the run folder is."""
    logging.getLogger("accelerate").setLevel(logging.WARNING)  # its per-file checkpoint messages drown the run's
    # save_state warns at every checkpoint that the tied lm_head is not stored twice; GPT-2 ties it by design.
    logging.getLogger("accelerate.utils.other").addFilter(lambda r: "Removed shared tensor" not in r.getMessage())
    run_dir = run_pipeline(args.recipe)
    logger.info("run folder: %s", run_dir)
    return 0

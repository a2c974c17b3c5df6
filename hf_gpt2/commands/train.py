"""`hf-gpt2 train RECIPE [section.key=value ...]`: pretrain or finetune as the recipe says."""

from __future__ import annotations

import argparse

HELP = "train (or finetune) a model from a recipe; add section.key=value overrides after the recipe"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the recipe path and the overrides."""
    from hf_gpt2.cli import add_recipe_arguments

    add_recipe_arguments(parser, "train.max_steps=100 run.name=test train.resume_from=latest")


def run(args: argparse.Namespace) -> int:
    """Load the recipe, train, and log where the run folder is."""
    import logging

    from hf_gpt2.recipe import load_recipe

    recipe = load_recipe(args.recipe, args.overrides)
    from hf_gpt2.training import run_training

    logging.getLogger("accelerate").setLevel(logging.WARNING)  # its per-file checkpoint messages drown the run's
    # save_state warns at every checkpoint that the tied lm_head is not stored twice; GPT-2 ties it by design.
    logging.getLogger("accelerate.utils.other").addFilter(lambda r: "Removed shared tensor" not in r.getMessage())

    run_dir = run_training(recipe)
    logging.getLogger(__name__).info("run folder: %s", run_dir)
    return 0

"""`hf-gpt2 push`: upload a release (or a run folder's final/) to the Hub as one commit, with its model card."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from hf_gpt2.errors import CheckpointError
from hf_gpt2.hub import is_generated_card, push_release, write_model_card

logger = logging.getLogger(__name__)


def run(args: argparse.Namespace) -> int:
    """Push the release (writing its card first when it is missing or was generated) and log the commit URL."""
    folder = Path(args.model)
    release, run_dir = folder, None
    if (folder / "final" / "config.json").is_file():  # a run folder: push its release, build the card from the run
        release, run_dir = folder / "final", folder
    elif (folder.parent / "recipe.yaml").is_file() and folder.name == "final":
        run_dir = folder.parent
    if not (release / "config.json").is_file():
        raise CheckpointError(f"{folder} is neither a model folder (config.json) nor a run folder with final/")
    card = release / "README.md"
    if args.rewrite_card or not card.is_file() or is_generated_card(card):  # a generated card gets this repo id
        write_model_card(release, run_dir, repo_id=args.repo_id, license=args.license)
    hub = {"repo_id": args.repo_id, "private": args.private, "license": args.license}
    url = push_release(release, hub, commit_message=args.commit_message, revision=args.revision, run_dir=run_dir)
    logger.info("done: %s", url)
    return 0

"""`hf-gpt2 push`: upload a release (or a run folder's final/) to the Hub as one commit, with its model card."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from hf_gpt2.errors import CheckpointError
from hf_gpt2.hub import is_generated_card, push_release

logger = logging.getLogger(__name__)


def run(args: argparse.Namespace) -> int:
    """Push the release (with a new card when it has none or hf_gpt2 wrote it) and log the commit URL.

    The token and the repo are checked before anything is written; the release gets its new card only once the
    upload succeeded (:func:`hf_gpt2.hub.push_release`).
    """
    folder = Path(args.model)
    release, run_dir = folder, None
    if (folder / "final" / "config.json").is_file():  # a run folder: push its release, build the card from the run
        release, run_dir = folder / "final", folder
    elif (folder.parent / "recipe.yaml").is_file() and folder.name == "final":
        run_dir = folder.parent
    if not (release / "config.json").is_file():
        raise CheckpointError(f"{folder} is neither a model folder (config.json) nor a run folder with final/")
    rewrite = args.rewrite_card or is_generated_card(release / "README.md")  # a generated card gets this repo id
    hub = {"repo_id": args.repo_id, "private": args.private, "license": args.license}
    url = push_release(
        release, hub, commit_message=args.commit_message, revision=args.revision, run_dir=run_dir, rewrite_card=rewrite
    )
    logger.info("done: %s", url)
    return 0

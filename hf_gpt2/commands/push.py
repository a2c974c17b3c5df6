"""`hf-gpt2 push`: upload a release (or a run folder's final/) to the Hub as one commit, with its model card."""

from __future__ import annotations

import argparse
import logging

HELP = "push a model folder (a release, or a run folder's final/) to the Hugging Face Hub"
logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", required=True, metavar="FOLDER", help="a release folder, or a run folder that has final/"
    )
    parser.add_argument(
        "--repo-id", required=True, metavar="USER/NAME", help="the Hub model repo (created if missing)"
    )
    parser.add_argument(
        "--private", action="store_true", help="create the repo as private (an existing repo keeps its visibility)"
    )
    parser.add_argument("--revision", metavar="BRANCH", help="branch to push to (created from main if missing)")
    parser.add_argument("--commit-message", metavar="TEXT", help="commit message")
    parser.add_argument(
        "--license", metavar="ID", help="license for a newly written card (default: the recipe's hub.license or mit)"
    )
    parser.add_argument(
        "--rewrite-card",
        action="store_true",
        help="rewrite README.md even if it was edited by hand (a card hf_gpt2 wrote is always rewritten)",
    )


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from hf_gpt2.errors import CheckpointError
    from hf_gpt2.hub import push_release, write_model_card
    from hf_gpt2.hub.card import is_generated_card

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

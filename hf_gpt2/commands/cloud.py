"""`hf-gpt2 cloud`: train a recipe on remote GPUs with SkyPilot (Lambda Cloud and others), watch it, tear it down.

hf-gpt2 cloud launch RECIPE --gpus H100:8 [--nodes N] [--infra lambda] [--name NAME] [--keep] [--managed]
                     [--dry-run] [overrides...]
hf-gpt2 cloud status | logs [--follow] | tensorboard [--port P] | sync | down   [NAME]
"""

from __future__ import annotations

import argparse
import logging
import sys

from hf_gpt2.cloud import launcher
from hf_gpt2.commands.arguments import CommandParser, cloud_launch_options

logger = logging.getLogger(__name__)


def run(args: argparse.Namespace) -> int:
    """Run one cloud action."""
    action = args.cloud_command
    if action == "launch":
        return _launch(args)
    if action == "status":
        launcher.status(args.name)
    elif action == "logs":
        launcher.logs(args.name, follow=args.follow)
    elif action == "down":
        launcher.down(args.name)
    elif action == "tensorboard":
        return launcher.tensorboard(args.name, port=args.port)
    elif action == "sync":
        dest = launcher.sync(args.name, dest=args.dest, checkpoints=not args.no_checkpoints)
        logger.info("run folder synced to %s", dest)
    return 0


def _launch(args: argparse.Namespace) -> int:
    rest = CommandParser(prog="hf-gpt2 cloud launch")
    cloud_launch_options(rest)
    rest.add_argument("overrides", nargs="*", help="section.key=value recipe overrides")
    args = rest.parse_intermixed_args(args.rest, namespace=args)
    options = launcher.LaunchOptions(
        gpus=args.gpus,
        nodes=args.nodes,
        infra=args.infra,
        name=args.name,
        keep=args.keep,
        managed=args.managed,
        detach=args.detach,
        mounts=args.mount,
    )
    root = launcher.find_project_root()
    plan = launcher.plan_launch(args.recipe, args.overrides, options, root)
    if args.dry_run:
        sys.stdout.write(launcher.dry_run(plan, root))
        return 0
    record = launcher.launch(plan, options, root)
    logger.info("launched %s: `hf-gpt2 cloud logs %s --follow` to watch it", record.name, record.name)
    return 0

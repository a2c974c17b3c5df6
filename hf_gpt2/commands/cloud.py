"""`hf-gpt2 cloud`: train a recipe on remote GPUs with SkyPilot (Lambda Cloud and others), watch it, tear it down.

hf-gpt2 cloud launch RECIPE --gpus H100:8 [--nodes N] [--infra lambda] [--name NAME] [--keep] [--managed]
                     [--dry-run] [overrides...]
hf-gpt2 cloud status | logs [--follow] | tensorboard [--port P] | sync | down   [NAME]
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

HELP = "train on remote GPUs with SkyPilot (Lambda and other clouds): launch, status, logs, tensorboard, sync, down"

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the cloud subcommands to ``parser``."""
    sub = parser.add_subparsers(dest="cloud_command", metavar="ACTION", required=True)
    launch = sub.add_parser(
        "launch",
        help="render a SkyPilot task from a recipe and launch it",
        usage="hf-gpt2 cloud launch RECIPE [--gpus H100:8] [--nodes N] [--infra INFRA] [--name NAME] [--keep] "
        "[--managed] [--detach] [--mount REMOTE=LOCAL] [--dry-run] [section.key=value ...]",
        description="Render a SkyPilot task from RECIPE (+ section.key=value overrides) and launch it. Options may "
        "come before or after the recipe; overrides come after it.",
    )
    _add_launch_options(launch)
    launch.add_argument("recipe", help="recipe YAML, e.g. recipes/full.yaml")
    launch.add_argument("rest", nargs=argparse.REMAINDER, metavar="[OPTIONS] [OVERRIDES]", help=argparse.SUPPRESS)

    for action, text in (("status", "show the cluster or managed job"), ("down", "tear the cluster down")):
        sub.add_parser(action, help=text, description=text).add_argument("name", nargs="?", help=_NAME_HELP)
    logs = sub.add_parser("logs", help="print the run's logs", description="print the run's logs")
    logs.add_argument("name", nargs="?", help=_NAME_HELP)
    logs.add_argument("--follow", action="store_true", help="keep printing until the job ends")
    board = sub.add_parser("tensorboard", help="forward the remote TensorBoard to a local port")
    board.add_argument("name", nargs="?", help=_NAME_HELP)
    board.add_argument("--port", type=int, default=6006, help="local port (default 6006)")
    sync = sub.add_parser("sync", help="pull the run folder from the cluster (rsync)")
    sync.add_argument("name", nargs="?", help=_NAME_HELP)
    sync.add_argument("--dest", type=Path, default=None, help="local folder (default runs/<run name>)")
    sync.add_argument("--no-checkpoints", action="store_true", help="skip checkpoints/ (large optimizer states)")


def run(args: argparse.Namespace) -> int:
    """Run one cloud action."""
    from hf_gpt2.cloud import launcher

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


_NAME_HELP = "cluster or managed-job name (default: the latest launch from this machine)"


def _add_launch_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gpus", default="H100:8", help="GPU type and count per node (default H100:8)")
    parser.add_argument("--nodes", type=int, default=1, help="number of nodes (default 1)")
    parser.add_argument("--infra", default=None, help="lambda, lambda/us-east-1, aws, k8s, ... (default: any)")
    parser.add_argument("--name", default=None, help="cluster and run name (default: recipe name + date)")
    parser.add_argument("--keep", action="store_true", help="keep the cluster when the run ends")
    parser.add_argument("--managed", action="store_true", help="managed job: relaunched after preemption")
    parser.add_argument("--detach", action="store_true", help="return once submitted instead of streaming logs")
    parser.add_argument(
        "--mount", action="append", default=[], metavar="REMOTE=LOCAL", help="copy a local file or folder"
    )
    parser.add_argument("--dry-run", action="store_true", help="print the rendered task and change nothing")


def _launch(args: argparse.Namespace) -> int:
    from hf_gpt2.cloud import launcher

    rest = argparse.ArgumentParser(prog="hf-gpt2 cloud launch RECIPE")
    _add_launch_options(rest)
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

"""Helpers that run on the cluster, called by the task's run script (``python -m hf_gpt2.cloud.remote ...``).

``resume-arg --spec hub:USER/NAME@REV --nodes N -- RECIPE [overrides...]`` prints the ``train.resume_from=...``
override that continues the run, or nothing for a fresh start, so that one task serves the first launch, a relaunch
after preemption (a new cluster: resume from the newest checkpoint pushed to the Hub) and a relaunch on a kept
cluster (resume from the run folder's own newest checkpoint when it is at least as new as the Hub's).
Every node of a multi-node run must make the same choice, so those decide from the Hub alone. A Hub error other than
"no such repo or revision" fails the run rather than restarting from step 0 over the pushed checkpoints.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

from hf_gpt2.hub import common
from hf_gpt2.hub.download import latest_pushed_step, parse_hub_spec
from hf_gpt2.recipe import load_recipe
from hf_gpt2.training.state import latest_checkpoint

logger = logging.getLogger("hf_gpt2.cloud")


def resume_arg(spec: str, run_dir: Path | None, *, nodes: int = 1) -> str:
    """The ``train.resume_from`` override for a run whose folder is ``run_dir`` and whose pushes go to ``spec``."""
    hub_step = pushed_step(spec) if spec else None
    local_step = _local_step(run_dir) if run_dir is not None and nodes == 1 else None
    if local_step is not None and (hub_step is None or local_step >= hub_step):
        return "train.resume_from=latest"
    occupied = run_dir is not None and run_dir.is_dir() and any(run_dir.iterdir())
    if occupied and (hub_step is not None or nodes > 1):
        # A resume from the Hub (and any multi-node start) wants a fresh folder: keep what was there, out of the way.
        logger.warning("moved %s to %s", run_dir, _move_aside(run_dir))
        occupied = False
    if hub_step is not None:
        return f"train.resume_from={spec}"
    return "train.resume_from=latest" if occupied else ""  # latest: a named run with no checkpoint starts afresh


def pushed_step(spec: str) -> int | None:
    """The newest ``checkpoints/step-N`` pushed to ``hub:USER/NAME@REV``; None when there is none (or no repo yet)."""
    repo_id, revision = parse_hub_spec(spec)
    try:
        return latest_pushed_step(common.make_api().list_repo_files(repo_id, revision=revision))
    except (RepositoryNotFoundError, RevisionNotFoundError):
        return None


def _move_aside(run_dir: Path) -> Path:
    stamp = time.strftime("%y%m%d%H%M%S")
    aside = next(
        path
        for n in range(1000)
        if not (path := run_dir.with_name(f"{run_dir.name}.before-{stamp}{f'-{n}' if n else ''}")).exists()
    )
    return run_dir.rename(aside)


def _local_step(run_dir: Path) -> int | None:
    checkpoint = latest_checkpoint(run_dir / "checkpoints")
    return int(checkpoint.name.removeprefix("step-")) if checkpoint is not None else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hf_gpt2.cloud.remote")
    sub = parser.add_subparsers(dest="command", required=True)
    resume = sub.add_parser("resume-arg", help="print the train.resume_from override that continues this run")
    resume.add_argument("--spec", default="", help="hub:USER/NAME@REVISION the run pushes checkpoints to")
    resume.add_argument("--nodes", type=int, default=1)
    resume.add_argument("recipe")
    resume.add_argument("overrides", nargs="*")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    recipe = load_recipe(args.recipe, args.overrides)
    if recipe.train.resume_from is not None:  # the user chose where to start from
        return 0
    run_dir = Path(recipe.run.output_dir) / recipe.run.name if recipe.run.name else None
    arg = resume_arg(args.spec, run_dir, nodes=args.nodes)
    logger.info("%s", f"resuming with {arg}" if arg else "starting from step 0")
    if arg:
        sys.stdout.write(arg + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

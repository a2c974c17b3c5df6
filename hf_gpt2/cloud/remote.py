"""Helpers that run on the cluster, called by the task's run script (``python -m hf_gpt2.cloud.remote ...``).

``resume-arg hub:USER/NAME@REVISION`` prints ``train.resume_from=hub:USER/NAME@REVISION`` when that revision holds a
pushed ``checkpoints/step-N/`` (an earlier launch of the same run got that far) and nothing when the repo or revision
does not exist yet (the first launch), so one task serves the first launch and every relaunch. Any other Hub error
fails the run rather than silently restarting from step 0 and overwriting the pushed checkpoints.
"""

from __future__ import annotations

import argparse
import sys


def resume_arg(spec: str) -> str:
    """``train.resume_from=SPEC`` when SPEC's revision holds a pushed checkpoint, else an empty string."""
    if not spec:
        return ""
    from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

    from hf_gpt2.hub import common
    from hf_gpt2.hub.download import latest_pushed_step, parse_hub_spec

    repo_id, revision = parse_hub_spec(spec)
    try:
        files = common.make_api().list_repo_files(repo_id, revision=revision)
    except (RepositoryNotFoundError, RevisionNotFoundError):
        return ""
    return f"train.resume_from={spec}" if latest_pushed_step(files) is not None else ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hf_gpt2.cloud.remote")
    sub = parser.add_subparsers(dest="command", required=True)
    resume = sub.add_parser("resume-arg", help="print the train.resume_from override for a Hub checkpoint spec")
    resume.add_argument("spec", nargs="?", default="")
    args = parser.parse_args(argv)
    arg = resume_arg(args.spec)
    if arg:
        sys.stdout.write(arg + "\n")
    sys.stderr.write(f"hf_gpt2.cloud: {'resuming with ' + arg if arg else 'starting from step 0'}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

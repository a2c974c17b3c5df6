"""Helpers that run on the cluster, called by the task's run script (``python -m hf_gpt2.cloud.remote ...``).

``resume-arg hub:USER/NAME@REVISION`` prints ``train.resume_from=hub:USER/NAME@REVISION`` when that revision exists on
the Hub (checkpoints were pushed by an earlier launch of the same run) and nothing when it does not (first launch),
so one task serves the first launch and every relaunch. Any other Hub error fails the run rather than silently
restarting from step 0 and overwriting the pushed checkpoints.
"""

from __future__ import annotations

import argparse
import sys

from hf_gpt2.cloud.errors import CloudError


def parse_hub_spec(spec: str) -> tuple[str, str]:
    """Split ``hub:USER/NAME@REVISION`` into (repo_id, revision); the revision defaults to ``main``."""
    if not spec.startswith("hub:") or "/" not in spec:
        raise CloudError(f"resume spec {spec!r} is not of the form hub:USER/NAME[@REVISION]")
    repo_id, _, revision = spec.removeprefix("hub:").partition("@")
    return repo_id, revision or "main"


def resume_arg(spec: str, api=None) -> str:
    """``train.resume_from=SPEC`` when SPEC's revision exists on the Hub, else an empty string."""
    if not spec:
        return ""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import RepositoryNotFoundError

    repo_id, revision = parse_hub_spec(spec)
    api = api or HfApi()
    try:
        refs = api.list_repo_refs(repo_id)
    except RepositoryNotFoundError:
        return ""
    names = {ref.name for ref in [*refs.branches, *refs.tags]}
    return f"train.resume_from={spec}" if revision in names else ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hf_gpt2.cloud.remote")
    sub = parser.add_subparsers(dest="command", required=True)
    resume = sub.add_parser("resume-arg", help="print the train.resume_from override for a Hub checkpoint spec")
    resume.add_argument("spec", nargs="?", default="")
    args = parser.parse_args(argv)
    arg = resume_arg(args.spec)
    if arg:
        sys.stdout.write(arg + "\n")
    sys.stderr.write(f"hf_gpt2.cloud: {'resuming: ' + arg if arg else 'no pushed checkpoint to resume from'}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

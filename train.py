"""Train GPT-2 from a recipe: `python train.py RECIPE [section.key=value ...]` or `accelerate launch train.py ...`.

Examples:
    python train.py recipes/quickstart.yaml
    python train.py recipes/quickstart.yaml train.max_steps=50 run.name=try1
    accelerate launch --config_file accelerate_configs/multi_gpu.yaml train.py recipes/full.yaml
    python train.py recipes/quickstart.yaml run.name=try1 train.resume_from=latest
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    """Run ``hf-gpt2 train`` with these arguments; project errors print one line and return 2."""
    from hf_gpt2.cli import main as cli_main

    argv = sys.argv[1:] if argv is None else argv
    return cli_main(["train", *argv])


if __name__ == "__main__":
    raise SystemExit(main())

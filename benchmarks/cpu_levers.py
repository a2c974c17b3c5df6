"""CPU levers that change speed, not the maths: fused vs foreach AdamW, torch.compile's break-even, the data path.

Measured on the quickstart's model and batch, with the training loop's own pieces (``build_model``,
``build_optimizers``, ``compute_loss``, ``TokenWindowLoader``), for OpenAI's BPE (vocabulary 50257) and a new
8,192-token BPE's vocabulary; contenders alternate step by step (or run by turns) in this one process, so that load
from other work hits them alike, and the medians are reported.

- AdamW: ``optimizer.step()`` alone, fused kernel against foreach (and the for-loop default), on the gradients of
  one real backward.
- ``torch.compile``: a fresh model compiled in place (``train.compile``, a fresh inductor cache): the time of its first
  step (compilation) and of later steps, against the eager model; break-even = extra first-step time / time saved per
  step.
- data path: the loader's ``next()`` (memory-mapped shards, one numpy gather per row, no Python per token) against a
  whole optimizer step.

    python benchmarks/cpu_levers.py                  # ~5 min on 2 cores
    python benchmarks/cpu_levers.py --steps 10 --vocab 8192
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def build(vocab: int, compiled: bool):
    import torch

    from hf_gpt2.recipe import load_recipe
    from hf_gpt2.tokenization import load_gpt2_tokenizer
    from hf_gpt2.training.components import build_model
    from hf_gpt2.training.optim import build_optimizers
    from hf_gpt2.training.speed import compile_model

    gpt2 = ["tokenizer.name=gpt2", "optim.name=adamw", "tokenizer.train_new=false", "tokenizer.vocab_size=null",
            "model.vocab_size=50257", "train.compile=false"]  # fmt: skip
    recipe = load_recipe(REPO / "recipes" / "quickstart.yaml", overrides=gpt2)
    torch.manual_seed(0)
    model = build_model(recipe, 50257, load_gpt2_tokenizer()).train()
    if vocab != 50257:
        model.resize_token_embeddings(vocab)
    if compiled:
        compile_model(model)
    return recipe, model, build_optimizers(model, recipe.optim, torch.device("cpu"))[0]


def batch(recipe, vocab: int, seed: int):
    import torch

    g = torch.Generator().manual_seed(seed)
    w = torch.randint(0, vocab, (recipe.train.micro_batch_size, recipe.data.block_size + 1), generator=g)
    return {"input_ids": w[:, :-1], "targets": w[:, 1:]}


def step_time(model, optimizer, b) -> float:
    from hf_gpt2.training.components import compute_loss

    started = time.perf_counter()
    compute_loss(model, b).backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return time.perf_counter() - started


def adamw_kinds(vocab: int, repeats: int) -> dict[str, float]:
    """Median ms of ``optimizer.step()`` for fused, foreach and for-loop AdamW on the same model and gradients."""
    import torch

    from hf_gpt2.training.components import compute_loss
    from hf_gpt2.training.optim import param_groups

    recipe, model, _ = build(vocab, compiled=False)
    compute_loss(model, batch(recipe, vocab, 0)).backward()
    kinds = {"fused": {"fused": True}, "foreach": {"foreach": True}, "for-loop": {"foreach": False}}
    optimizers = {k: torch.optim.AdamW(param_groups(model, 0.1), lr=1e-9, **kw) for k, kw in kinds.items()}
    times: dict[str, list[float]] = {k: [] for k in kinds}
    for _ in range(repeats):
        for kind, optimizer in optimizers.items():  # interleaved
            started = time.perf_counter()
            optimizer.step()
            times[kind].append(time.perf_counter() - started)
    return {kind: 1000 * statistics.median(t[1:]) for kind, t in times.items()}


def compile_break_even(vocab: int, steps: int) -> dict[str, float]:
    """First-step and steady step seconds of an eager and a compiled model, stepped by turns; the break-even step."""
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="inductor_")  # a cold compile, as a first run
    recipe, eager, eager_opt = build(vocab, compiled=False)
    _, compiled, compiled_opt = build(vocab, compiled=True)
    first = {"eager": step_time(eager, eager_opt, batch(recipe, vocab, 0)),
             "compiled": step_time(compiled, compiled_opt, batch(recipe, vocab, 0))}  # fmt: skip
    times: dict[str, list[float]] = {"eager": [], "compiled": []}
    for i in range(steps):
        for kind, (model, opt) in {"eager": (eager, eager_opt), "compiled": (compiled, compiled_opt)}.items():
            times[kind].append(step_time(model, opt, batch(recipe, vocab, i + 1)))
    eager_s, compiled_s = statistics.median(times["eager"]), statistics.median(times["compiled"])
    saved = eager_s - compiled_s
    extra = first["compiled"] - first["eager"]
    return {"eager_step_s": eager_s, "compiled_step_s": compiled_s, "first_eager_s": first["eager"],
            "first_compiled_s": first["compiled"], "speedup": eager_s / compiled_s,
            "break_even_steps": extra / saved if saved > 0 else float("inf")}  # fmt: skip


def data_path(steps: int) -> dict[str, float]:
    """Median ms of the loader's next() on the built-in corpus and of an optimizer step of the quickstart model."""
    from hf_gpt2.data.loader import TokenWindowLoader
    from hf_gpt2.data.prepare import prepare_token_shards
    from hf_gpt2.recipe import load_recipe

    recipe, model, optimizer = build(50257, compiled=False)
    quick = load_recipe(REPO / "recipes" / "quickstart.yaml", overrides=["tokenizer.train_new=false",
                        "model.vocab_size=50257", "tokenizer.vocab_size=null"])  # fmt: skip
    loader = TokenWindowLoader(prepare_token_shards(quick), "train", 128, 8, 1337)
    loads, steps_s = [], []
    for _ in range(steps):
        started = time.perf_counter()
        window = next(loader)
        loads.append(time.perf_counter() - started)
        steps_s.append(step_time(model, optimizer, {"input_ids": window[:, :-1], "targets": window[:, 1:]}))
    return {"loader_ms": 1000 * statistics.median(loads), "step_ms": 1000 * statistics.median(steps_s)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=12, help="timed steps per contender")
    parser.add_argument("--vocab", default="50257,8192", help="vocabulary sizes to measure")
    parser.add_argument("--only", default="adamw,compile,data", help="which of adamw, compile, data")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    torch.set_num_threads(len(os.sched_getaffinity(0)))
    print(f"torch {torch.__version__} | {torch.get_num_threads()} threads | load average "
          f"{', '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)  # fmt: skip
    only = args.only.split(",")
    for vocab in (int(v) for v in args.vocab.split(",")):
        if "adamw" in only:
            ms = adamw_kinds(vocab, 4 * args.steps)
            print(f"vocab {vocab}: AdamW step " + ", ".join(f"{k} {v:.1f} ms" for k, v in ms.items())
                  + f" | foreach / fused {ms['foreach'] / ms['fused']:.2f}x", flush=True)  # fmt: skip
        if "compile" in only:
            r = compile_break_even(vocab, args.steps)
            print(f"vocab {vocab}: step eager {r['eager_step_s']:.3f} s, compiled {r['compiled_step_s']:.3f} s "
                  f"({r['speedup']:.2f}x); first step eager {r['first_eager_s']:.1f} s, compiled "
                  f"{r['first_compiled_s']:.1f} s; break-even after {r['break_even_steps']:.0f} steps",
                  flush=True)  # fmt: skip
    if "data" in only:
        r = data_path(args.steps)
        print(f"data path: loader next() {r['loader_ms']:.2f} ms per batch, optimizer step {r['step_ms']:.0f} ms "
              f"({100 * r['loader_ms'] / r['step_ms']:.3f}% of a step)", flush=True)  # fmt: skip
    print(f"load average at the end {', '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()

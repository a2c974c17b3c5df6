"""GPU training throughput and MFU: GPT-2 124M at T=1024, bf16 autocast, hf_gpt2 against stock GPT-2, compiled and not.

One process, one GPU. For every (model, compiled) pair a fresh randomly initialised model is built, trained for
``--warmup`` steps (compilation happens there) and then timed for ``--steps`` steps. A step is
``model(input_ids=x, labels=x).loss.backward()`` under ``torch.autocast("cuda", torch.bfloat16)``, then fused AdamW.
TF32 and the flash SDPA kernel are on (``hf_gpt2.training.speed.configure_backends``); hf_gpt2 compiles through
``hf_gpt2.training.speed.compile_model`` and stock GPT-2 through the same in-place ``nn.Module.compile``.

The models: ``hf_gpt2`` (``skip_logits=True``: the chunked LM-head + loss, as its training loop calls it),
``hf_gpt2-nochunk`` (the same call with ``loss_chunk_size=0``: full logits then cross-entropy, which inductor may fuse
better) and ``stock``.

MFU = tokens/s × FLOPs/token ÷ the GPU's dense bf16 peak (``hf_gpt2.training.metrics.PEAK_TFLOPS``; H100 SXM and H200
989 TFLOP/s, A100 312). FLOPs/token = 6·N + 12·L·T·d with N the parameters without the position table (855 MFLOP
for GPT-2 124M at T=1024), the same for both models.

    python benchmarks/gpu_throughput.py                       # on the GPU machine; about 5 min on one H100
    python benchmarks/gpu_throughput.py --batch-size 32 --json gpu.json
    python benchmarks/gpu_throughput.py --smoke               # tiny config on CPU, to keep the script correct
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import traceback

import torch

GPT2_124M = {"vocab_size": 50257, "n_positions": 1024, "n_embd": 768, "n_layer": 12, "n_head": 12}
SMOKE = {"vocab_size": 512, "n_positions": 64, "n_embd": 64, "n_layer": 2, "n_head": 2}
NO_DROPOUT = {"resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0}


MODELS = {
    "hf_gpt2": "hf_gpt2 with its chunked LM-head + loss (config default: 4096 rows per chunk on CUDA)",
    "hf_gpt2-nochunk": "hf_gpt2 with loss_chunk_size=0: full logits, then cross-entropy (what compile may fuse)",
    "stock": "transformers' GPT2LMHeadModel",
}


def build(which: str, config: dict, attn: str) -> torch.nn.Module:
    torch.manual_seed(0)
    if which == "stock":
        from transformers import GPT2Config, GPT2LMHeadModel

        return GPT2LMHeadModel(GPT2Config(**config, **NO_DROPOUT, use_cache=False, attn_implementation=attn))
    from hf_gpt2 import HfGPT2Config, HfGPT2ForCausalLM

    chunk = {"loss_chunk_size": 0} if which == "hf_gpt2-nochunk" else {}
    return HfGPT2ForCausalLM(HfGPT2Config(**config, **NO_DROPOUT, **chunk, use_cache=False, attn_implementation=attn))


def flops_per_token(config: dict, seq_len: int) -> float:
    """6·N + 12·L·T·d with N = GPT-2's parameters without the position table (wte counted once, tied)."""
    from hf_gpt2.training.metrics import flops_per_token as formula

    d, layers, vocab = config["n_embd"], config["n_layer"], config["vocab_size"]
    n_params = vocab * d + layers * (12 * d * d + 13 * d) + 2 * d  # wte + blocks + ln_f
    return formula(n_params, layers, d, seq_len)


def measure(which: str, compiled: bool, args: argparse.Namespace, device: torch.device) -> dict:
    from hf_gpt2.training.speed import compile_model

    config = SMOKE if args.smoke else GPT2_124M
    model = build(which, config, args.attn).to(device).train()
    fused = device.type == "cuda"
    optimizer = torch.optim.AdamW(model.parameters(), lr=6e-4, betas=(0.9, 0.95), weight_decay=0.1, fused=fused)
    if compiled:
        compile_model(model, **({"backend": args.smoke_backend} if args.smoke else {}))
    x = torch.randint(0, config["vocab_size"], (args.batch_size, args.seq_len), device=device)
    ours = {} if which == "stock" else {"skip_logits": True}  # the training loop's call

    def step() -> torch.Tensor:
        with torch.autocast(device.type, dtype=torch.bfloat16):
            loss = model(input_ids=x, labels=x, **ours).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss

    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    start = time.perf_counter()
    for _ in range(args.warmup):
        step()
    sync()
    warmup_s = time.perf_counter() - start
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    for _ in range(args.steps):
        loss = step()
    sync()
    elapsed = time.perf_counter() - start
    tokens_per_s = args.batch_size * args.seq_len * args.steps / elapsed
    result = {
        "model": which,
        "compiled": compiled,
        "tokens_per_s": tokens_per_s,
        "step_ms": 1000 * elapsed / args.steps,
        "warmup_s": warmup_s,
        "loss": loss.item(),
        "peak_mem_gib": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None,
    }
    return result


def device_peak(device: torch.device) -> tuple[str, float | None]:
    if device.type != "cuda":
        return platform.processor() or "cpu", None
    from hf_gpt2.training.metrics import peak_flops

    name = torch.cuda.get_device_name(device)
    return name, peak_flops(name, "bf16")


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=16, help="micro-batch (sequences); 16 × 1024 fits 80 GB")
    parser.add_argument("--seq-len", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per configuration")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first (compilation happens here)")
    parser.add_argument(
        "--models", default="hf_gpt2,stock,hf_gpt2-nochunk", help="comma-separated: " + ", ".join(MODELS)
    )
    parser.add_argument(
        "--compile", default="yes,no", help="'yes', 'no' or both in the order to run (compiled first by default)"
    )
    parser.add_argument("--attn", default="sdpa", help="attn_implementation, e.g. sdpa or flash_attention_2")
    parser.add_argument("--json", help="also write the results to this JSON file")
    parser.add_argument("--smoke", action="store_true", help="tiny config, batch 2 × 32, 2 + 1 steps, on CPU")
    parser.add_argument("--smoke-backend", default="aot_eager", help="torch.compile backend in --smoke mode")
    args = parser.parse_args(argv)
    unknown = [m for m in args.models.split(",") if m not in MODELS]
    if unknown:
        parser.error(f"--models: unknown {', '.join(unknown)}; choose from {', '.join(MODELS)}")
    if args.smoke:
        args.batch_size, args.seq_len, args.steps, args.warmup = 2, 32, 2, 1
        device = torch.device("cpu")
    elif torch.cuda.is_available():
        device = torch.device("cuda")
    else:
        parser.error("no CUDA device: run on the GPU machine, or use --smoke on CPU")

    from hf_gpt2.training.speed import configure_backends

    flags = configure_backends()
    name, peak = device_peak(device)
    config = SMOKE if args.smoke else GPT2_124M
    fpt = flops_per_token(config, args.seq_len)
    print(
        f"{name} | torch {torch.__version__} | bf16 autocast | batch {args.batch_size} x {args.seq_len} | "
        f"{fpt / 1e6:.0f} MFLOP/token | peak {peak / 1e12 if peak else float('nan'):.0f} TFLOP/s | backends {flags}"
    )
    results = []
    for compiled in (flag == "yes" for flag in args.compile.split(",")):
        for which in args.models.split(","):
            try:
                result = measure(which, compiled, args, device)
                if device.type == "cuda":
                    torch.cuda.empty_cache()  # the model and optimizer of this run are gone
            except Exception as err:  # one failing configuration (OOM, compile error) must not hide the others
                traceback.print_exc()
                result = {"model": which, "compiled": compiled, "error": f"{type(err).__name__}: {err}"[:300]}
            result["mfu"] = result["tokens_per_s"] * fpt / peak if peak and "tokens_per_s" in result else None
            results.append(result)
            print(json.dumps(result), flush=True)
            if args.json:  # after every configuration, so a run stopped by a time limit keeps what it measured
                write_json(args.json, name, peak, fpt, results)

    stock = {r["compiled"]: r["tokens_per_s"] for r in results if r["model"] == "stock" and "tokens_per_s" in r}
    for r in results:
        r["vs_stock"] = (
            r["tokens_per_s"] / stock[r["compiled"]] if "tokens_per_s" in r and r["compiled"] in stock else None
        )
    print("\n| model | compiled | tokens/s | vs stock | MFU | step (ms) | peak memory (GiB) | warm-up (s) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        if "error" in r:
            print(f"| {r['model']} | {r['compiled']} | error: {r['error']} | | | | | |")
            continue
        ratio = f"{r['vs_stock']:.2f}x" if r["vs_stock"] is not None else "n/a"
        mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else "n/a"
        mem = f"{r['peak_mem_gib']:.1f}" if r["peak_mem_gib"] is not None else "n/a"
        print(
            f"| {r['model']} | {r['compiled']} | {r['tokens_per_s']:,.0f} | {ratio} | {mfu} | {r['step_ms']:.1f} "
            f"| {mem} | {r['warmup_s']:.0f} |"
        )
    best = max((r for r in results if r["model"] != "stock" and r.get("mfu")), key=lambda r: r["mfu"], default=None)
    if best is not None:
        verdict = "reached" if best["mfu"] >= 0.5 else "not reached"
        where = f"{best['model']} compiled={best['compiled']}"
        print(f"\nbest hf_gpt2: {where} at {100 * best['mfu']:.1f}% MFU (goal 50%: {verdict})")
    if args.json:
        write_json(args.json, name, peak, fpt, results)
    return results


def write_json(path: str, device: str, peak: float | None, fpt: float, results: list[dict]) -> None:
    with open(path, "w") as out:
        json.dump({"device": device, "peak_flops": peak, "flops_per_token": fpt, "results": results}, out, indent=2)


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()

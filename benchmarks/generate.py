"""Greedy generation with the KV cache, side by side: hf_gpt2 against stock transformers GPT-2 (sdpa).

The stock model is randomly initialised (same config as benchmarks/train_step.py) and hf_gpt2 is converted from it
(``from_gpt2``), so both must produce the same tokens; the script asserts that. Each call is
``model.generate(prompt, max_new_tokens=N, do_sample=False, use_cache=True)`` with no EOS token, so every call
generates exactly N tokens. The two models
alternate (the order flips every pair) and the median of the per-pair speed ratios is reported.

One intra-op thread by default: decoding runs many tiny ops, and on a loaded 2-core VM each parallel op waits for
the second thread to be scheduled (about 5× slower per step, ratios all over the place); ``--threads 2`` is there.

    .venv/bin/python benchmarks/generate.py            # about 1 min on the 2-core CPU
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

CONFIG = {"vocab_size": 50257, "n_positions": 256, "n_embd": 256, "n_layer": 4, "n_head": 4}
MODELS = ("stock", "hf_gpt2")


def build_pair() -> dict[str, torch.nn.Module]:
    from transformers import GPT2Config, GPT2LMHeadModel

    from hf_gpt2.convert import from_gpt2

    torch.manual_seed(0)
    stock = GPT2LMHeadModel(GPT2Config(**CONFIG, attn_implementation="sdpa")).eval()
    ours = from_gpt2(stock).eval()
    for model in (stock, ours):
        model.generation_config.eos_token_id = None  # always generate max_new_tokens; no EOS bookkeeping per step
    return {"stock": stock, "hf_gpt2": ours}


def run(batch: int, prompt_len: int, new_tokens: int, pairs: int, models: dict) -> dict:
    prompt = torch.randint(0, CONFIG["vocab_size"], (batch, prompt_len), generator=torch.Generator().manual_seed(2))
    kwargs = {
        "max_new_tokens": new_tokens,
        "do_sample": False,
        "use_cache": True,
        "pad_token_id": 50256,
    }

    def timed(name: str) -> tuple[float, torch.Tensor]:
        start = time.perf_counter()
        with torch.no_grad():
            out = models[name].generate(prompt, attention_mask=torch.ones_like(prompt), **kwargs)
        return time.perf_counter() - start, out

    outputs = {name: timed(name)[1] for name in MODELS}  # warm-up
    assert torch.equal(outputs["stock"], outputs["hf_gpt2"]), "greedy tokens differ between stock and hf_gpt2"
    times = {name: [] for name in MODELS}
    ratios = []
    for i in range(pairs):
        order = MODELS if i % 2 == 0 else MODELS[::-1]
        pair = {}
        for name in order:
            pair[name], out = timed(name)
            assert torch.equal(out, outputs["stock"]), f"{name}: greedy tokens changed between runs"
        for name in MODELS:
            times[name].append(pair[name])
        ratios.append(pair["stock"] / pair["hf_gpt2"])
    generated = batch * new_tokens
    return {
        "tokens_per_s": {name: generated / statistics.median(times[name]) for name in MODELS},
        "speedup": statistics.median(ratios),
        "speedups": ratios,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-sizes", default="1,8", help="comma-separated batch sizes")
    parser.add_argument("--prompt-len", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=96)
    parser.add_argument("--pairs", type=int, default=7)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="intra-op threads (1: on a shared 2-core VM, every tiny decode op otherwise waits for the second "
        "OpenMP thread to be scheduled, which made steps ~5x slower and the ratio noise)",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    models = build_pair()
    print(
        f"torch {torch.__version__}, {args.threads} threads, fp32, config {CONFIG}, prompt {args.prompt_len}, "
        f"{args.new_tokens} new tokens, greedy, KV cache"
    )
    print("\n| batch | stock tokens/s | hf_gpt2 tokens/s | speed-up (median of pairs) | same tokens |")
    print("|---|---|---|---|---|")
    for batch in (int(b) for b in args.batch_sizes.split(",")):
        result = run(batch, args.prompt_len, args.new_tokens, args.pairs, models)
        tps = result["tokens_per_s"]
        print(f"| {batch} | {tps['stock']:.0f} | {tps['hf_gpt2']:.0f} | {result['speedup']:.3f}x | yes |")
    print("\ntarget: speed-up >= 1.0x with the same greedy tokens")


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()

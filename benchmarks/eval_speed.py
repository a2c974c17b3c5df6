"""Scoring speed of hf-gpt2 eval against lm-evaluation-harness's HFLM, on the same requests, model and batch size.

Three request sets, built once from real English (the stdlib's pydoc topics) in the shapes of the suite's tasks:
``loglikelihood`` pairs like LAMBADA (a passage, its last word), multiple-choice pairs like HellaSwag (a context, four
endings) and ``loglikelihood_rolling`` documents like WikiText (pages longer than the context). Each side gets the same
strings: hf_gpt2's ``LoglikelihoodScorer`` (``encode_pair`` / rolling windows + ``loglikelihood``) and
lm-evaluation-harness's ``HFLM.loglikelihood`` / ``loglikelihood_rolling`` with lm_eval ``Instance``s; tokenization is
timed on both sides. The sides alternate (the order flips every pair), the median per-pair ratio is reported, and the
two sides' log-likelihoods are compared so that the work is the same.

    .venv/bin/python benchmarks/eval_speed.py                        # stock 6x384 GPT-2, batch 16, ~6 min on 2 cores
    .venv/bin/python benchmarks/eval_speed.py --model hf_gpt2        # its hf_gpt2 conversion, on both sides
    .venv/bin/python benchmarks/eval_speed.py --shape 124m --pairs 3 --device cuda --batch-size 64
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time

import torch
from transformers import GPT2Config, GPT2LMHeadModel

SHAPES = {"2x64": (2, 64, 4), "6x384": (6, 384, 6), "124m": (12, 768, 12)}


def english_words() -> list[str]:
    import pydoc_data.topics

    return " ".join(v.replace("\n", " ") for v in pydoc_data.topics.topics.values()).split()


def request_sets(n_pairs: int, n_choice: int, n_docs: int, doc_words: int) -> dict[str, list[tuple[str, ...]]]:
    """(context, continuation) pairs and (document,) tuples, as the suite's tasks build them."""
    words, rng = english_words(), random.Random(0)
    lambada = []
    for i in range(n_pairs):
        passage = words[i * 97 : i * 97 + rng.randint(40, 120)]
        lambada.append((" ".join(passage[:-1]), " " + passage[-1]))
    choice = []
    for i in range(n_choice):
        w = words[20000 + i * 53 : 20000 + i * 53 + 60]
        context = " ".join(w[:30])
        choice.extend((context, " " + " ".join(w[30 + 7 * k : 34 + 7 * k + rng.randint(0, 3)])) for k in range(4))
    docs = [(" ".join(words[40000 + i * doc_words : 40000 + (i + 1) * doc_words]),) for i in range(n_docs)]
    return {
        "loglikelihood (LAMBADA-like)": lambada,
        "multiple choice (HellaSwag-like)": choice,
        "rolling (WikiText-like)": docs,
    }


def ours(scorer, kind: str, requests) -> list[float]:
    from hf_gpt2.evaluation import LoglikelihoodRequest
    from hf_gpt2.evaluation.base import score_documents

    if kind.startswith("rolling"):
        documents = scorer.encode_documents([text for (text,) in requests])
        context, prefix = scorer.max_length, scorer.prefix_token_id
        scored = score_documents(scorer, documents, context=context, stride=context, prefix_token=prefix, desc="")
        return [ll for ll, _ in scored]
    pairs = [LoglikelihoodRequest(*scorer.encode_pair(context, continuation)) for context, continuation in requests]
    return [r.log_likelihood for r in scorer.loglikelihood(pairs)]


def theirs(lm, kind: str, requests) -> list[float]:
    from lm_eval.api.instance import Instance

    rolling = kind.startswith("rolling")
    instances = [
        Instance(request_type="loglikelihood_rolling" if rolling else "loglikelihood", doc={}, arguments=args, idx=i)
        for i, args in enumerate(requests)
    ]
    if rolling:
        return list(lm.loglikelihood_rolling(instances, disable_tqdm=True))
    return [ll for ll, _ in lm.loglikelihood(instances, disable_tqdm=True)]


def timed(fn, *args) -> tuple[float, float, list[float]]:
    """(wall seconds, CPU seconds of this process, result). CPU time moves less with other work on the machine."""
    started, cpu = time.perf_counter(), time.process_time()
    result = fn(*args)
    return time.perf_counter() - started, time.process_time() - cpu, result


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=SHAPES, default="6x384", help="GPT-2 shape (layers x width), random init")
    parser.add_argument(
        "--model", choices=("stock", "hf_gpt2"), default="stock", help="the model both sides score (same weights)"
    )
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--pairs", type=int, default=3, help="alternating (ours, theirs) timings per request set")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2, help="torch threads on CPU")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the number of requests")
    parser.add_argument("--json", default=None, help="also write the numbers here")
    args = parser.parse_args(argv)

    from lm_eval.models.huggingface import HFLM

    from hf_gpt2.evaluation import LoglikelihoodScorer
    from hf_gpt2.tokenization import load_gpt2_tokenizer

    torch.set_num_threads(args.threads)
    n_layer, n_embd, n_head = SHAPES[args.shape]
    torch.manual_seed(0)
    config = GPT2Config(n_layer=n_layer, n_embd=n_embd, n_head=n_head, n_positions=1024, vocab_size=50257)
    model = GPT2LMHeadModel(config).eval()
    if args.model == "hf_gpt2":
        from hf_gpt2.convert import from_gpt2

        model = from_gpt2(model)
    model = model.to(args.device).eval()
    tokenizer = load_gpt2_tokenizer()
    scorer = LoglikelihoodScorer(model, tokenizer, batch_size=args.batch_size, progress=False)
    lm = HFLM(pretrained=model, tokenizer=load_gpt2_tokenizer(), batch_size=args.batch_size, device=args.device)
    sets = request_sets(int(96 * args.scale), int(32 * args.scale), int(8 * args.scale), 1500)

    rows = []
    for kind, requests in sets.items():
        ours(scorer, kind, requests[:4]), theirs(lm, kind, requests[:4])  # warm-up
        ratios, cpu_ratios, times_ours, times_theirs = [], [], [], []
        for pair in range(args.pairs):
            order = [("ours", ours, scorer), ("theirs", theirs, lm)]
            results, cpu = {}, {}
            for name, fn, runner in order if pair % 2 == 0 else order[::-1]:
                seconds, cpu[name], results[name] = timed(fn, runner, kind, requests)
                (times_ours if name == "ours" else times_theirs).append(seconds)
            ratios.append(times_theirs[-1] / times_ours[-1])
            cpu_ratios.append(cpu["theirs"] / cpu["ours"])
        worst = max(abs(a - b) / max(abs(b), 1e-12) for a, b in zip(results["ours"], results["theirs"], strict=True))
        rows.append({
            "requests": kind, "n": len(requests), "hf_gpt2_s": statistics.median(times_ours),
            "lm_eval_s": statistics.median(times_theirs), "speedup": statistics.median(ratios),
            "pair_speedups": [round(r, 2) for r in ratios], "cpu_time_speedup": statistics.median(cpu_ratios),
            "max_rel_diff_loglikelihood": worst,
        })  # fmt: skip

    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"cpu, {args.threads} threads"
    print(
        f"{args.model} GPT-2 {args.shape} (random init, fp32), batch {args.batch_size}, {device}, {args.pairs} pairs"
    )
    print(f"{'requests':34} {'n':>5} {'hf_gpt2 s':>10} {'lm-eval s':>10} {'speedup':>8} {'cpu time':>8}  pairs")
    for row in rows:
        print(
            f"{row['requests']:34} {row['n']:5d} {row['hf_gpt2_s']:10.2f} {row['lm_eval_s']:10.2f} "
            f"{row['speedup']:7.2f}x {row['cpu_time_speedup']:7.2f}x  {row['pair_speedups']}  "
            f"(largest log-likelihood difference {row['max_rel_diff_loglikelihood']:.1e})"
        )
    report = {"model": args.model, "shape": args.shape, "batch_size": args.batch_size, "device": device, "rows": rows}
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=2)
    slowest = min(row["speedup"] for row in rows)
    if slowest < 2.0:
        print(f"below target: the smallest speedup is {slowest:.2f}x (target >= 2x)", file=sys.stderr)
    return report


if __name__ == "__main__":
    main()

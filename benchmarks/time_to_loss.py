"""Time to a target validation loss, in bits per byte: stock transformers GPT-2 + Trainer against hf_gpt2's recipes.

Every contender trains the same model shape on the same corpus within the same token budget, one after the other in
this one invocation, each in a fresh process. Each is scored on the same validation text (every window of the val
split, ``train.eval_batches: null``) every ``--eval-tokens`` tokens, in bits per UTF-8 byte
(``hf_gpt2.training.validation``), so contenders with different tokenizers compare fairly; it stops at the first
evaluation at or below the target, or when the budget runs out. Printed: tokens and wall-clock to the target and
their ratios to the stock baseline.

- ``stock``: transformers' ``GPT2LMHeadModel`` (its defaults: ``gelu_new``, KV cache built in training) trained by
  transformers' ``Trainer`` the way ``run_clm.py`` does it: the training tokens concatenated and cut into
  ``block_size`` blocks (labels = inputs), the same batch in tokens, AdamW (``adamw_torch_fused``, Trainer's
  default), lr, warmup, weight decay, betas and clipping of the quickstart, ``cosine_with_min_lr`` to the same floor.
  Its val bits per byte come from the same windows with the same byte table. It runs first and, by default, sets the
  target: its val bits per byte at the end of the budget.
- ``hf_gpt2`` and the levers: ``python train.py recipes/quickstart.yaml`` (hf_gpt2's real pipeline) with the
  overrides of :data:`CONTENDERS`; ``hf_gpt2`` is the quickstart as it was before these levers (OpenAI's BPE, AdamW,
  cosine), each lever is added to it alone, and ``speedrun`` is ``recipes/speedrun_cpu.yaml``, all of them together.

Wall-clock is the time spent training: for hf_gpt2 the loop's ``train_time_s`` (optimizer steps, compilation
included); for stock ``Trainer.train()``'s wall time; both without the evaluations (and with no checkpoints). Process
start-up and data preparation are outside it for every contender; the one-off preparation of each tokenizer's data
(training a new BPE included) is timed on its own and printed. ``torch.compile`` gets a fresh inductor cache per
contender (a first run's cold compile).

    python benchmarks/time_to_loss.py                                   # built-in corpus, every contender (~1 h)
    python benchmarks/time_to_loss.py --contenders stock,hf_gpt2,speedrun
    python benchmarks/time_to_loss.py --data stdlib-docs                # the Python standard library's pydoc text
    python benchmarks/time_to_loss.py --data 'my_corpus/*.txt' --target 1.9
    python benchmarks/time_to_loss.py --smoke                           # a tiny shape, to keep the script correct
    python benchmarks/time_to_loss.py --gpu --json ttl.json             # GPT-2 124M, bf16, compiled, on a GPU
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import pkgutil
import platform
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = REPO / "recipes" / "quickstart.yaml"
SPEEDRUN = REPO / "recipes" / "speedrun_cpu.yaml"


@dataclass(frozen=True)
class Contender:
    """One entry of the race: the stock baseline, or hf_gpt2 with a recipe and overrides."""

    what: str
    overrides: tuple[str, ...] = ()
    recipe: Path = QUICKSTART
    stock: bool = False
    own_schedule: bool = False
    """The recipe's own ``train.max_steps`` (at most the budget) instead of the whole budget."""


BEFORE = (
    "tokenizer.name=gpt2", "tokenizer.train_new=false", "tokenizer.vocab_size=null", "model.vocab_size=50257",
    "optim.name=adamw", "optim.lr=1e-3", "optim.min_lr=1e-4", "optim.warmup_steps=20", "optim.schedule=cosine",
    "optim.weight_decay=0.1", "optim.fused=null", "optim.foreach=null", "train.micro_batch_size=8",
    "train.grad_accum_steps=1", "train.global_batch_tokens=null", "train.compile=false",
)  # fmt: skip
"""The quickstart's settings before the levers: hf_gpt2's baseline, whatever ``recipes/quickstart.yaml`` holds now."""

CONTENDERS: dict[str, Contender] = {
    "stock": Contender("transformers GPT2LMHeadModel + Trainer, as run_clm.py (AdamW fused, cosine)", stock=True),
    "hf_gpt2": Contender("hf_gpt2, the quickstart before: OpenAI's BPE, AdamW (fused), cosine", BEFORE),
    "+compile": Contender("+ train.compile=true (cold inductor cache)", (*BEFORE, "train.compile=true")),
    "+foreach": Contender("+ foreach AdamW instead of fused", (*BEFORE, "optim.foreach=true")),
    "+muon": Contender("+ Muon for the blocks' matrices (lr 0.02), AdamW for the rest", (*BEFORE, "optim.name=muon")),
    "+wsd": Contender(
        "+ WSD schedule: constant lr, linear cooldown over the last 20%",
        (*BEFORE, "optim.schedule=wsd", "optim.decay_fraction=0.2"),
    ),
    "+batch4": Contender(
        "+ half the batch (4 x 128 tokens), twice the steps, lr 7e-4",
        (*BEFORE, "train.micro_batch_size=4", "optim.lr=7e-4", "optim.min_lr=7e-5", "optim.warmup_steps=40"),
    ),
    "+bpe8192": Contender(
        "+ a new 8,192-token BPE trained on the training split",
        (*BEFORE, "tokenizer.train_new=true", "model.vocab_size=8192"),
    ),
    "speedrun": Contender(
        "recipes/speedrun_cpu.yaml: the levers that won, together", recipe=SPEEDRUN, own_schedule=True
    ),  # fmt: skip
}

GPU_CONTENDERS = ("stock", "hf_gpt2", "speedrun")
GPT2_124M = ("model.n_layer=12", "model.n_head=12", "model.n_embd=768", "model.n_positions=1024")
SMOKE_SHAPE = ("model.n_layer=1", "model.n_head=2", "model.n_embd=32", "model.n_positions=64")


@dataclass
class Setup:
    """What every contender shares."""

    source: str
    shape: tuple[str, ...]
    block_size: int
    budget_tokens: int
    eval_tokens: int
    work: Path
    extra: tuple[str, ...] = ()
    """Overrides after each contender's own: ``--set`` and the settings ``--gpu`` / ``--smoke`` impose on everyone."""
    gpu: bool = False
    smoke: bool = False
    env: dict[str, str] = field(default_factory=dict)

    def common(self) -> list[str]:
        return [
            f"data.source={self.source}", f"data.block_size={self.block_size}", "data.val_fraction=0.02",
            f"data.cache_dir={self.work / 'data'}", f"run.output_dir={self.work / 'runs'}", "run.seed=1337",
            "run.log_every=10", *self.shape, "model.resid_pdrop=0.0", "model.embd_pdrop=0.0", "model.attn_pdrop=0.0",
            "train.eval_batches=null", "train.save_every=0", "sample.prompts=[]", "eval.tasks=[]",
        ]  # fmt: skip


# -- the stock baseline (in its own process) --------------------------------------------------------------------------


def stock_worker(config_path: str) -> None:
    """Train stock GPT-2 with transformers' Trainer as run_clm.py does; write the evaluations to the result file."""
    import numpy as np
    import torch
    from datasets import Dataset
    from transformers import (
        GPT2Config,
        GPT2LMHeadModel,
        Trainer,
        TrainerCallback,
        TrainingArguments,
        default_data_collator,
        set_seed,
    )

    from hf_gpt2.data.loader import TokenWindowLoader
    from hf_gpt2.data.prepare import prepare_token_shards
    from hf_gpt2.recipe import load_recipe
    from hf_gpt2.tokenization import load_tokenizer, token_byte_lengths
    from hf_gpt2.training.components import to_model_batch
    from hf_gpt2.training.validation import ValScores, rows_per_forward, score_batches

    cfg = json.loads(Path(config_path).read_text())
    recipe = load_recipe(str(cfg["recipe"]), overrides=cfg["overrides"])
    prepared = prepare_token_shards(recipe)
    tokenizer = load_tokenizer(recipe)
    device = torch.device("cuda" if cfg["gpu"] else "cpu")
    T, B = recipe.data.block_size, recipe.train.micro_batch_size
    tokens = prepared.read_tokens("train").astype(np.int64)
    blocks = tokens[: len(tokens) // T * T].reshape(-1, T)  # run_clm's group_texts: cut into block_size pieces
    train_set = Dataset.from_dict({"input_ids": blocks, "labels": blocks.copy()})
    val = TokenWindowLoader(prepared, "val", T, B, recipe.run.seed)
    byte_lengths = torch.tensor(token_byte_lengths(tokenizer), device=device)
    rows = rows_per_forward(T, device)
    set_seed(recipe.run.seed)
    m = recipe.model
    model = GPT2LMHeadModel(
        GPT2Config(vocab_size=len(tokenizer), n_positions=m.n_positions, n_embd=m.n_embd, n_layer=m.n_layer,
                   n_head=m.n_head, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                   bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id)
    )  # fmt: skip
    o = recipe.optim
    args = TrainingArguments(
        output_dir=cfg["output_dir"], per_device_train_batch_size=B,
        gradient_accumulation_steps=recipe.train.accum_steps(T), max_steps=recipe.train.max_steps,
        learning_rate=o.lr, weight_decay=o.weight_decay, adam_beta1=o.beta1, adam_beta2=o.beta2, adam_epsilon=o.eps,
        max_grad_norm=recipe.train.grad_clip, lr_scheduler_type="cosine_with_min_lr",
        lr_scheduler_kwargs={"min_lr": o.min_lr}, warmup_steps=o.warmup_steps, logging_steps=10,
        save_strategy="no", eval_strategy="no", report_to="none", seed=recipe.run.seed, use_cpu=not cfg["gpu"],
        bf16=cfg["gpu"], tf32=cfg["gpu"] or None, torch_compile=cfg["gpu"], disable_tqdm=True,
        dataloader_drop_last=True,
    )  # fmt: skip
    every, target, tokens_per_step = cfg["eval_every"], cfg["target"], cfg["tokens_per_step"]
    evals: list[dict] = []

    class Evaluate(TrainerCallback):
        def __init__(self) -> None:
            self.started, self.eval_s = 0.0, 0.0

        def on_train_begin(self, args, state, control, **kwargs):
            self.started = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            step = state.global_step
            if step % every and step != state.max_steps:
                return
            if cfg["gpu"]:
                torch.cuda.synchronize()
            begin = time.perf_counter()
            train_s = begin - self.started - self.eval_s
            model.eval()
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg["gpu"]):
                batches = (to_model_batch(b, device) for b in val.tiled_batches())
                scores = ValScores.from_sums(score_batches(model, batches, byte_lengths, rows))
            model.train()
            evals.append({"step": step, "tokens": step * tokens_per_step, "bpb": scores.bits_per_byte,
                          "loss": scores.loss, "train_s": train_s})  # fmt: skip
            print(json.dumps(evals[-1]), flush=True)
            self.eval_s += time.perf_counter() - begin
            if target is not None and scores.bits_per_byte <= target:
                control.should_training_stop = True

    trainer = Trainer(model=model, args=args, train_dataset=train_set, data_collator=default_data_collator,
                      callbacks=[Evaluate()])  # fmt: skip
    trainer.train()
    Path(cfg["result"]).write_text(json.dumps({"evals": evals}))


# -- running the contenders -------------------------------------------------------------------------------------------


def tokens_per_step(recipe: Path, overrides: list[str]) -> tuple[int, int]:
    """(tokens per optimizer step, the recipe's max_steps) of a recipe with overrides, on one process."""
    from hf_gpt2.recipe import load_recipe

    loaded = load_recipe(str(recipe), overrides=overrides)
    return loaded.train.tokens_per_step(loaded.data.block_size), loaded.train.max_steps


def run(cmd: list[str], env: dict[str, str], log: Path) -> float:
    """Run a command with its output in ``log``; return its wall seconds; stop the benchmark if it fails."""
    started = time.perf_counter()
    with log.open("w") as out:
        done = subprocess.run(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd[:4])} ... failed (exit {done.returncode}); see {log}:\n{log.read_text()[-3000:]}")
    return time.perf_counter() - started


def race(name: str, contender: Contender, setup: Setup, target: float | None) -> dict:
    """Train one contender until the target or the budget; return its evaluations and what it reached."""
    work = setup.work
    overrides = [*setup.common(), *contender.overrides, *setup.extra]  # the shared settings win
    per_step, own_steps = tokens_per_step(contender.recipe, overrides)
    steps = setup.budget_tokens // per_step
    if contender.own_schedule:
        steps = min(steps, own_steps)
    if setup.eval_tokens % per_step:
        sys.exit(f"{name}: --eval-tokens {setup.eval_tokens} is not a multiple of its {per_step} tokens per step")
    every = setup.eval_tokens // per_step
    overrides += [f"train.max_steps={steps}", f"train.eval_every={every}", f"run.name={name.strip('+')}"]
    overrides += [f"train.target_val_bpb={target}"] if target is not None else []
    env = {**os.environ, **setup.env, "TORCHINDUCTOR_CACHE_DIR": str(work / "inductor" / name.strip("+"))}
    prep_cmd = [sys.executable, "-m", "hf_gpt2.cli", "prepare", str(contender.recipe), *overrides]
    prep_log = work / f"{name.strip('+')}-prepare.log"
    prep_s = run(prep_cmd, env, prep_log)
    reused = "reusing token shards" in prep_log.read_text()
    log = work / f"{name.strip('+')}.log"
    if contender.stock:
        config = work / "stock.json"
        result = work / "stock-result.json"
        settings = {"recipe": str(contender.recipe), "overrides": overrides, "gpu": setup.gpu, "target": target,
                    "output_dir": str(work / "stock-trainer"), "result": str(result), "eval_every": every,
                    "tokens_per_step": per_step}  # fmt: skip
        config.write_text(json.dumps(settings))
        run([sys.executable, __file__, "--stock-worker", str(config)], env, log)
        evals = json.loads(result.read_text())["evals"]
    else:
        run([sys.executable, "train.py", str(contender.recipe), *overrides], env, log)
        evals = hf_gpt2_evals(work / "runs" / name.strip("+"), per_step)
    reached = next((e for e in evals if target is not None and e["bpb"] <= target), None)
    return {"name": name, "what": contender.what, "tokens_per_step": per_step, "steps": steps, "evals": evals,
            "reached": reached, "last": evals[-1], "prepare_s": prep_s, "prepare_reused": reused}  # fmt: skip


def hf_gpt2_evals(run_dir: Path, per_step: int) -> list[dict]:
    """Each evaluation of an hf_gpt2 run (from TensorBoard), and the training time of the last one (eval.json)."""
    from hf_gpt2.eval_report import EvalReport
    from hf_gpt2.hub.curves import read_curves

    curves = read_curves(run_dir / "tb")
    bpb = dict(curves.series.get("val/bpb", []))
    loss = dict(curves.series.get("val/loss", []))
    report = EvalReport.read(run_dir / "eval.json")
    evals = [
        {"step": s, "tokens": s * per_step, "bpb": bpb[s], "loss": loss.get(s), "train_s": None} for s in sorted(bpb)
    ]
    evals[-1]["train_s"] = report.train_time_s
    evals[-1]["bpb"] = report.val_bits_per_byte  # exact, not TensorBoard's float32
    return evals


# -- corpora ----------------------------------------------------------------------------------------------------------


def stdlib_docs(folder: Path) -> str:
    """Write the pydoc text of every top-level standard-library module (one .txt each) and return the glob."""
    folder.mkdir(parents=True, exist_ok=True)
    stdlib = sysconfig.get_paths()["stdlib"]
    skip = {"antigravity", "this", "idlelib", "turtledemo", "tkinter", "turtle"}
    names = sorted(m.name for m in pkgutil.iter_modules([stdlib]) if not m.name.startswith("_") and m.name not in skip)
    import pydoc

    warnings.filterwarnings("ignore")
    for name in names:
        try:
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                text = pydoc.render_doc(__import__(name), renderer=pydoc.plaintext)
        except Exception:  # a module that does not import here (a missing optional C library) is left out
            continue
        (folder / f"{name}.txt").write_text(text, encoding="utf-8")
    return str(folder / "*.txt")


# -- the report -------------------------------------------------------------------------------------------------------


def table(results: list[dict], target: float) -> str:
    stock = next((r for r in results if r["name"] == "stock" and r["reached"]), None)
    lines = [
        "| contender | tokens/step | val bpb at stop | reached | tokens to target | × stock | train time to target "
        "| × stock | one-off prep |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        hit = r["reached"]
        if hit is None:
            cells = [f"{r['last']['bpb']:.4f}", f"no (budget {r['steps']} steps)", "—", "—", "—", "—"]
        else:
            t_ratio = f"{hit['train_s'] / stock['reached']['train_s']:.2f}×" if stock and hit["train_s"] else "—"
            k_ratio = f"{hit['tokens'] / stock['reached']['tokens']:.2f}×" if stock else "—"
            time_s = f"{hit['train_s']:.1f} s" if hit["train_s"] is not None else "—"
            cells = [f"{hit['bpb']:.4f}", f"step {hit['step']}", f"{hit['tokens']:,}", k_ratio, time_s, t_ratio]
        prep = "reused" if r["prepare_reused"] else f"{r['prepare_s']:.0f} s"
        lines.append(f"| {r['name']} | {r['tokens_per_step']:,} | " + " | ".join(cells) + f" | {prep} |")
    return "\n".join(lines)


def machine_line() -> str:
    import torch

    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor() or "cpu"
    return f"{device} | {cores} cores | torch {torch.__version__} | load average {load}"


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--contenders", default=",".join(CONTENDERS), help="comma-separated: " + ", ".join(CONTENDERS))
    parser.add_argument("--data", default="kjv", help="data.source for every contender; 'stdlib-docs' builds one")
    parser.add_argument("--budget-tokens", type=int, default=160 * 1024, help="the quickstart's 160 steps x 1024")
    parser.add_argument("--eval-tokens", type=int, default=10 * 1024, help="evaluate every this many tokens")
    parser.add_argument("--target", type=float, help="val bits per byte to reach (default: stock's at the budget)")
    parser.add_argument("--set", action="append", default=[], help="one more override for every hf_gpt2 contender")
    parser.add_argument("--try", dest="tries", action="append", default=[], metavar="'NAME KEY=VALUE ...'",
                        help="one more contender: the hf_gpt2 baseline with these overrides (repeatable)")  # fmt: skip
    parser.add_argument("--json", help="also write the results to this JSON file")
    parser.add_argument("--keep", help="keep the runs in this folder (default: a temporary one, removed)")
    parser.add_argument("--gpu", action="store_true", help="GPT-2 124M, T=1024, bf16, compiled, on the GPU")
    parser.add_argument("--smoke", action="store_true", help="a 1-layer model, 6 steps: keeps the script correct")
    parser.add_argument("--stock-worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.stock_worker:
        stock_worker(args.stock_worker)
        return []
    for spec in args.tries:
        name, *overrides = spec.split()
        CONTENDERS[name] = Contender(f"hf_gpt2 + {' '.join(overrides)}", (*BEFORE, *overrides))
    names = args.contenders.split(",") + [spec.split()[0] for spec in args.tries]
    if args.gpu and args.contenders == parser.get_default("contenders"):
        names = list(GPU_CONTENDERS)
    unknown = [n for n in names if n not in CONTENDERS]
    if unknown:
        parser.error(f"--contenders: unknown {', '.join(unknown)}; choose from {', '.join(CONTENDERS)}")
    if args.target is None and names[0] != "stock":
        parser.error("without --target, the first contender must be stock (its val bpb at the budget is the target)")

    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="time_to_loss_"))
    work.mkdir(parents=True, exist_ok=True)
    source = stdlib_docs(work / "stdlib-docs") if args.data == "stdlib-docs" else args.data
    setup = Setup(source=source, shape=(), block_size=128, budget_tokens=args.budget_tokens,
                  eval_tokens=args.eval_tokens, work=work, extra=tuple(args.set),
                  env={"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"})  # fmt: skip
    if args.gpu and not args.smoke:
        import torch

        if not torch.cuda.is_available():
            parser.error("--gpu needs a CUDA device (or add --smoke to rehearse on CPU)")
    if args.gpu:  # GPT-2 124M; 64 Ki-token steps of 16 x 1024 (4 accumulation steps on one GPU), bf16, compiled
        setup.shape, setup.block_size, setup.gpu = GPT2_124M, 1024, not args.smoke
        setup.extra += ("train.micro_batch_size=16", "train.global_batch_tokens=65536", "train.grad_accum_steps=null",
                        "train.compile=true", "optim.warmup_steps=4")  # fmt: skip
        setup.env["ACCELERATE_MIXED_PRECISION"] = "bf16"
        if args.budget_tokens == parser.get_default("budget_tokens"):
            setup.budget_tokens, setup.eval_tokens = 24 * 65536, 4 * 65536
    if args.smoke:  # a 1-layer model, 8 x 32-token steps, whatever the other options say
        setup.shape, setup.block_size, setup.smoke = SMOKE_SHAPE, 32, True
        setup.extra += ("data.max_documents=60", "train.micro_batch_size=8", "train.global_batch_tokens=null",
                        "train.grad_accum_steps=1", "train.compile=false")  # fmt: skip
        setup.budget_tokens, setup.eval_tokens = 6 * 8 * 32, 3 * 8 * 32
        setup.env.pop("ACCELERATE_MIXED_PRECISION", None)

    print(machine_line(), flush=True)
    print(f"corpus {args.data} | budget {setup.budget_tokens:,} tokens | evaluation every {setup.eval_tokens:,} "
          f"tokens on the whole val split | work folder {work}", flush=True)  # fmt: skip
    target, results = args.target, []
    try:
        for name in names:
            result = race(name, CONTENDERS[name], setup, target)
            if name == "stock" and target is None:
                target = result["last"]["bpb"]
                result["reached"] = result["last"]
                print(f"target: stock's val bpb after {result['last']['tokens']:,} tokens = {target:.4f}", flush=True)
            results.append(result)
            hit = result["reached"]
            done = f"reached {hit['bpb']:.4f} at {hit['tokens']:,} tokens in {hit['train_s']:.1f} s" if hit else None
            print(f"{name}: {done or 'not reached'} (val bpb {result['last']['bpb']:.4f})", flush=True)
            if args.json:
                Path(args.json).write_text(json.dumps({"target": target, "machine": machine_line(),
                                                       "results": results}, indent=1))  # fmt: skip
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(f"\n{machine_line()}\ntarget {target:.4f} val bits per byte\n")
    print(table(results, target))
    return results


if __name__ == "__main__":
    main()

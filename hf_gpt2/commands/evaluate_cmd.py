"""`hf-gpt2 eval`: score a model on the GPT-2 paper's benchmarks and print them beside GPT-2's numbers."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from hf_gpt2.errors import HfGPT2Error

if TYPE_CHECKING:
    from accelerate import Accelerator

HELP = "Benchmark a model (hf_gpt2 folder, any causal-LM folder, or Hub id) on the GPT-2 paper's suite and HellaSwag."

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of `hf-gpt2 eval`."""
    parser.add_argument("--model", required=True, help="an hf_gpt2 folder, any causal-LM folder, or a Hub id")
    parser.add_argument(
        "--tasks",
        required=True,
        help="comma-separated tasks or groups: gpt2-paper, all, lambada_openai, lambada_openai_paper, wikitext2, "
        "wikitext103, ptb, lm1b, cbt_cn, cbt_ne, hellaswag, enwik8, text8, val_loss, core",
    )
    parser.add_argument(
        "--data",
        action="append",
        default=[],
        metavar="TASK=PATH",
        help="a local file or folder for a task instead of its Hub dataset (repeatable); core also takes "
        "hf://datasets/OWNER/REPO",
    )
    parser.add_argument("--limit", type=int, default=None, help="score only the first N documents/items per task")
    parser.add_argument("--batch-size", type=int, default=8, help="requests per forward pass (default 8)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1, mps ... (default: cuda if available)")
    parser.add_argument("--dtype", default=None, help="weights dtype: float32, bfloat16, float16 (default: as saved)")
    protocol = parser.add_argument_group("protocol (every default is lm-evaluation-harness's choice)")
    protocol.add_argument(
        "--max-length",
        type=int,
        default=None,
        help="tokens per forward pass (default: the config's n_positions/max_position_embeddings/n_ctx, else the "
        "tokenizer's model_max_length)",
    )
    protocol.add_argument("--context", type=int, default=None, help="rolling tasks: tokens per window (default: all)")
    protocol.add_argument(
        "--stride",
        type=int,
        default=None,
        help="rolling tasks: new tokens per window (default: --context, disjoint windows; enwik8/text8: half of it)",
    )
    protocol.add_argument(
        "--prefix-token-id",
        type=int,
        default=None,
        help="the token before documents and empty contexts (default: BOS, else EOS)",
    )
    protocol.add_argument(
        "--add-special-tokens",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="encode documents and contexts with the tokenizer's special tokens (default: the tokenizer's own "
        "choice; GPT-2's BPE adds none)",
    )
    protocol.add_argument("--no-detokenize", action="store_true", help="score WikiText/CBT/PTB/1BW text as tokenized")
    protocol.add_argument(
        "--cbt-split",
        choices=("validation", "test"),
        default=None,
        help="CBT split (default validation, the GPT-2 paper's)",
    )
    protocol.add_argument(
        "--test-bytes",
        type=int,
        default=None,
        help="enwik8/text8: score the file's last N bytes (default 5,000,000, the standard test split; 0 = the "
        "whole file)",
    )
    parser.add_argument("--output", default=None, metavar="FILE.json", help="write the results as JSON")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def parse_data_args(items: list[str]) -> dict[str, str]:
    """``["lambada_openai=/x.jsonl"]`` → ``{"lambada_openai": "/x.jsonl"}``."""
    data = {}
    for item in items:
        task, sep, path = item.partition("=")
        if not sep or not task or not path:
            raise HfGPT2Error(f"--data expects TASK=PATH, got {item!r}")
        data[task.strip()] = path
    return data


def run(args: argparse.Namespace) -> int:
    """Load the model, run the tasks, print the table and write the JSON."""
    from hf_gpt2.evaluation import (
        TASKS,
        EvalOptions,
        describe_data,
        format_table,
        load_model_and_tokenizer,
        resolve_tasks,
        run_tasks,
    )

    data = parse_data_args(args.data)
    if args.no_progress:
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()
    options = EvalOptions(
        context=args.context,
        stride=args.stride,
        detokenize=not args.no_detokenize,
        max_length=args.max_length,
        add_special_tokens=args.add_special_tokens,
        prefix_token_id=args.prefix_token_id,
        **{k: v for k, v in (("cbt_split", args.cbt_split), ("test_bytes", args.test_bytes)) if v is not None},
    )
    tasks = resolve_tasks(args.tasks, data)  # fail on a bad name before loading the model
    accelerator = _accelerator_if_launched(args.device)
    device = accelerator.device if accelerator is not None else args.device
    model, tokenizer = load_model_and_tokenizer(args.model, device=device, dtype=args.dtype)
    started = time.perf_counter()
    results = run_tasks(
        model,
        tokenizer,
        tasks,
        data=data,
        limit=args.limit,
        batch_size=args.batch_size,
        accelerator=accelerator,
        progress=not args.no_progress,
        options=options,
    )
    if accelerator is not None and not accelerator.is_main_process:
        return 0
    sources = describe_data(tasks, data, options)
    sys.stdout.write(format_table(results, title=f"model: {args.model}", sources=sources) + "\n")
    if args.output:
        settings = {
            "tasks": tasks,
            "data": data,
            "sources": {name: TASKS[name].describe_source(data.get(name), options) for name in tasks},
            "scored": sources,
            "limit": args.limit,
            "batch_size": args.batch_size,
            "device": str(model.device),
            "dtype": str(model.dtype).removeprefix("torch."),
            "context": args.context,
            "stride": args.stride,
            "detokenize": not args.no_detokenize,
            "max_length": args.max_length,
            "prefix_token_id": args.prefix_token_id,
            "add_special_tokens": args.add_special_tokens,
            "cbt_split": options.cbt_split,
            "test_bytes": options.test_bytes,
            "num_processes": 1 if accelerator is None else accelerator.num_processes,
            "seconds": round(time.perf_counter() - started, 2),
        }
        _write_json(Path(args.output), {**results, "model": args.model, "settings": settings})
        logger.info("wrote %s", args.output)
    return 0


def _accelerator_if_launched(device: str | None) -> Accelerator | None:
    """An Accelerator when started by `accelerate launch`/torchrun with several processes, else None."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    import torch
    from accelerate import Accelerator

    # Without cpu=True, Accelerate only detects several processes on GPUs; on CPU it would run them all as rank 0.
    return Accelerator(cpu=device == "cpu" or not torch.cuda.is_available())


def _write_json(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)

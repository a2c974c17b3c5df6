"""`hf-gpt2 eval`: score a model on the GPT-2 paper's benchmarks and print them beside GPT-2's numbers."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

import torch
from accelerate import Accelerator
from transformers.utils import logging as transformers_logging

from hf_gpt2.devices import resolve_device
from hf_gpt2.errors import HfGPT2Error
from hf_gpt2.evaluation import (
    TASKS,
    EvalOptions,
    describe_data,
    format_table,
    load_model_and_tokenizer,
    resolve_tasks,
    run_tasks,
)
from hf_gpt2.folders import check_writable, write_text_atomically

logger = logging.getLogger(__name__)


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
    data = parse_data_args(args.data)
    if args.no_progress:
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
    if args.output:
        check_writable(Path(args.output))  # and on an --output that cannot be written, before the work
    accelerator = _accelerator_if_launched(args.device)
    device = accelerator.device if accelerator is not None else resolve_device(args.device)
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
    # Without cpu=True, Accelerate only detects several processes on GPUs; on CPU it would run them all as rank 0.
    return Accelerator(cpu=device == "cpu" or not torch.cuda.is_available())


def _write_json(path: Path, payload: dict) -> None:
    write_text_atomically(path, json.dumps(payload, indent=2) + "\n")

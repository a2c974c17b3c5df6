"""The model card's text: YAML metadata (tags, datasets, ``model-index``) and the Markdown body, from a RunSummary.

Sections: the model in one line, the training summary (data, tokenizer, tokens, batch, optimizer, hardware,
throughput, time, final losses), the loss curves, the evaluation table beside GPT-2 124M's numbers, and usage.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCardData

from hf_gpt2.hub.references import (
    Reference,
    find_reference,
    headline_metrics,
    task_dataset,
    val_loss_reference,
)
from hf_gpt2.hub.summary import EVENTS_DIR, RECIPE, RunSummary

LOSS_PNG = "loss_curves.png"
EVAL_PNG = "eval_curves.png"
_PLACEHOLDER_REPO = "USER/MODEL"
GENERATED_MARKER = (
    "<!-- written by hf_gpt2 from the run's files; delete this line to keep hand edits on the next push -->"
)
_LEGACY_GPT2 = {
    "gpt2": "openai-community/gpt2",
    "gpt2-medium": "openai-community/gpt2-medium",
    "gpt2-large": "openai-community/gpt2-large",
    "gpt2-xl": "openai-community/gpt2-xl",
    "distilgpt2": "distilbert/distilgpt2",
}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


# ----------------------------------------------------------------------------------------------- metadata


def _base_model(summary: RunSummary, base_model: str | None) -> str | None:
    if base_model:
        return _LEGACY_GPT2.get(base_model, base_model)
    init = summary.section("model").get("init")
    if not isinstance(init, str) or init == "scratch" or Path(init).exists() or not _HUB_ID.match(init):
        return None
    return _LEGACY_GPT2.get(init, init)


def _datasets(summary: RunSummary, datasets: list[str] | None) -> list[str] | None:
    if datasets:
        return list(datasets)
    source = summary.section("data").get("source")
    if isinstance(source, str) and source.startswith("hub:"):
        return [source[len("hub:") :]]
    return None


def _tags(summary: RunSummary) -> list[str]:
    tags = ["hf_gpt2", "gpt2", "causal-lm", "text-generation", "custom_code"]
    if summary.section("data").get("format") == "sft":
        tags.append("sft")
    lora = summary.section("train").get("lora")
    if isinstance(lora, dict) and (lora.get("r") or 0) > 0:
        tags.append("lora")
    return tags


def eval_results_for_index(summary: RunSummary) -> list[EvalResult]:
    """``model-index`` entries: the validation loss and the headline metrics of every task."""
    results = []
    datasets = _datasets(summary, None)
    if summary.report.val_loss is not None:
        source = str(summary.section("data").get("source") or "validation")
        results.append(
            EvalResult(
                task_type="text-generation",
                task_name="Language Modeling",
                dataset_type=datasets[0] if datasets else source,
                dataset_name=f"{source.removeprefix('hub:')} (held-out split)",
                dataset_split="validation",
                metric_type="loss",
                metric_name="validation loss",
                metric_value=round(summary.report.val_loss, 4),
            )
        )
    for task, metrics in summary.report.tasks.items():
        dataset = task_dataset(task)
        for metric in headline_metrics(task, metrics):
            value = metrics[metric]
            results.append(
                EvalResult(
                    task_type="text-generation",
                    task_name="Text Generation",
                    dataset_type=dataset.id,
                    dataset_name=dataset.name,
                    dataset_config=dataset.config,
                    dataset_split=dataset.split,
                    metric_type=metric,
                    metric_name=f"{task} {metric}",
                    metric_value=round(float(value), 4),
                )
            )
    return results


def card_metadata(
    summary: RunSummary,
    *,
    model_name: str,
    license: str | None = None,
    base_model: str | None = None,
    datasets: list[str] | None = None,
) -> ModelCardData:
    """The card's YAML metadata (library, tags, datasets, license, pipeline, base model, model-index)."""
    hub = summary.section("hub")
    return ModelCardData(
        library_name="transformers",
        pipeline_tag="text-generation",
        license=license or hub.get("license") or "mit",
        language=["en"],
        tags=_tags(summary),
        datasets=_datasets(summary, datasets),
        base_model=_base_model(summary, base_model),
        model_name=model_name,
        eval_results=eval_results_for_index(summary) or None,
    )


# ----------------------------------------------------------------------------------------------- rendering


def _human(n: float | None, unit: str = "") -> str:
    if n is None:
        return "not recorded"
    for scale, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{suffix}{unit}"
    return f"{n:.4g}{unit}"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "not recorded"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {secs:02d}s"


def _number(value: float | None, digits: int = 4) -> str:
    return "—" if value is None else f"{value:.{digits}g}"


def _model_line(summary: RunSummary, base: str | None) -> str:
    c = summary.config
    shape = ", ".join(
        f"{label} {c[key]}"
        for key, label in (
            ("n_layer", "layers"),
            ("n_head", "heads"),
            ("n_embd", "width"),
            ("n_positions", "context"),
            ("vocab_size", "vocabulary"),
        )
        if key in c
    )
    size = f"{_human(summary.num_parameters)} parameters" if summary.num_parameters else "GPT-2"
    origin = f"finetuned from [{base}](https://huggingface.co/{base})" if base else "trained from scratch"
    return f"A GPT-2 language model ({size}; {shape}) {origin} with hf_gpt2."


def _training_table(summary: RunSummary) -> str:
    f, train, optim, data = summary.facts, summary.section("train"), summary.section("optim"), summary.section("data")
    source = data.get("source", "not recorded")
    rows = [
        ("data", f"`{source}` ({data.get('format', 'text')}), block size {data.get('block_size', '?')}"),
        ("tokenizer", _tokenizer_text(summary.section("tokenizer"))),
        ("tokens seen", _human(f["tokens_seen"])),
        ("optimizer steps", _human(f["steps"])),
    ]
    per_step = train.get("global_batch_tokens") or (
        f["tokens_seen"] / f["steps"] if f["tokens_seen"] and f["steps"] else None
    )
    if per_step:
        rows.append(("batch", f"{int(per_step):,} tokens per optimizer step"))
    if optim:
        rows.append(("optimizer", _optimizer_text(optim)))
    hardware = f["hardware"] or "not recorded"
    if f["num_processes"]:
        hardware += f" ({f['num_processes']} process{'es' if f['num_processes'] != 1 else ''})"
    if f["mixed_precision"] and f["mixed_precision"] != "no":
        hardware += f", {f['mixed_precision']} mixed precision"
    rows.append(("hardware", hardware))
    if f["tokens_per_s"]:
        mfu = f", MFU {100 * f['mfu']:.1f}%" if f["mfu"] else ""
        rows.append(("throughput", f"{_human(f['tokens_per_s'])} tokens/s (median){mfu}"))
    rows += [
        ("wall time", _duration(f["wall_time_s"])),
        ("final train loss", _number(f["final_train_loss"])),
        ("final validation loss", _number(f["final_val_loss"])),
    ]
    if f.get("final_val_bpb") is not None:
        rows.append(("final validation bits per byte", _number(f["final_val_bpb"])))
    lines = ["| | |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows]
    return "\n".join(lines)


def _optimizer_text(optim: dict[str, Any]) -> str:
    adamw = (
        f"AdamW, lr {optim.get('lr')} → {optim.get('min_lr')}, {optim.get('schedule')} schedule, "
        f"{optim.get('warmup_steps')} warmup steps, weight decay {optim.get('weight_decay')}"
    )
    if optim.get("name") != "muon":
        return adamw
    return (
        f"Muon for the blocks' matrices (lr {optim.get('muon_lr')}, momentum {optim.get('muon_momentum')}, weight "
        f"decay {optim.get('muon_weight_decay')}) and {adamw} for the embeddings, biases and LayerNorm"
    )


def _tokenizer_text(tokenizer: dict[str, Any]) -> str:
    name = tokenizer.get("name")
    if name is None:
        return "not recorded"
    if tokenizer.get("train_new"):
        return f"a new BPE with `{name}`'s pipeline, trained on the data's training split (in this repository)"
    return "OpenAI's GPT-2 BPE (50,257 tokens)" if name == "gpt2" else f"`{name}`"


def _shown(metric: str, value: float | None) -> str:
    """Accuracies (fractions, as the tasks report them) in %, like the paper's table; a dash for no value."""
    if value is None:
        return "—"
    if not math.isfinite(value):
        return str(value)
    if metric.startswith("acc"):
        return f"{100.0 * value:.2f}"
    return f"{value:.4g}"


def _eval_table(summary: RunSummary) -> str:
    rows = []
    if summary.report.val_loss is not None:
        source = str(summary.section("data").get("source", ""))
        ref = Reference(lm_eval=val_loss_reference(source))
        rows.append(_eval_row("validation", "loss", summary.report.val_loss, ref, None))
    for task, metrics in summary.report.tasks.items():
        for metric in headline_metrics(task, metrics):
            rows.append(_eval_row(task, metric, metrics[metric], find_reference(task, metric), metrics.get("n")))
    if not rows:
        return "No evaluation results were recorded for this release (`eval.json` is missing or empty)."
    header = [
        "| task | metric | this model | GPT-2 124M (paper) | GPT-2 124M (lm-eval / nanoGPT) | n |",
        "|---|---|---|---|---|---|",
    ]
    notes = (
        'Paper: Radford et al. 2019, Table 3 (zero-shot, the "117M" model); `lambada_openai_paper` scores the last '
        "BPE token as OpenAI did. lm-eval / nanoGPT: the same OpenAI `gpt2` weights scored by lm-evaluation-harness "
        "(`lambada_openai`: the whole last word; `hellaswag`) or nanoGPT (validation loss on OpenWebText; 3.28 is "
        "the FineWeb speedrun target). Accuracies in %; all zero-shot; the full results are in `eval.json`."
    )
    return "\n".join(header + rows) + "\n\n" + notes


def _eval_row(task: str, metric: str, value: float, ref: Reference | None, n: float | None) -> str:
    label = f"{metric} (%)" if metric.startswith("acc") else metric
    paper, lm_eval = (ref.paper, ref.lm_eval) if ref else (None, None)
    count = f"{int(n):,}" if n is not None else "—"
    return (
        f"| {task} | {label} | {_shown(metric, float(value))} | {_shown(metric, paper)} | "
        f"{_shown(metric, lm_eval)} | {count} |"
    )


def _usage(repo_id: str) -> str:
    return f"""```python
from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline

model = AutoModelForCausalLM.from_pretrained("{repo_id}", trust_remote_code=True)  # the modeling code ships here
tokenizer = AutoTokenizer.from_pretrained("{repo_id}")
generate = pipeline("text-generation", model=model, tokenizer=tokenizer)
print(generate("In the beginning", max_new_tokens=40)[0]["generated_text"])
```

With the package installed (`pip install hf-gpt2`), `import hf_gpt2` registers the model with the Auto classes, so
no remote code is run:

```python
import hf_gpt2  # noqa: F401  (registers model_type "hf_gpt2")
from transformers import AutoModelForCausalLM

model = AutoModelForCausalLM.from_pretrained("{repo_id}")
```

### A stock GPT-2 copy

The weights use GPT-2's parameter names, so they convert to a plain `transformers` `GPT2LMHeadModel` (no custom
code; it works with the tools that know GPT-2, such as vLLM or GGUF and ONNX exporters):

```bash
hf-gpt2 convert --to-gpt2 {repo_id} ./gpt2-copy
```

```python
from transformers import GPT2LMHeadModel
model = GPT2LMHeadModel.from_pretrained("./gpt2-copy")
```"""


def _during_training_text(summary: RunSummary) -> str:
    limits = sorted({p.limit for p in summary.report.history}, key=lambda limit: limit or 0)
    items = " / ".join("all" if limit is None else f"the first {limit}" for limit in limits)
    steps = sorted({p.step for p in summary.report.history})
    return (
        f"During training (`eval.every`, steps {', '.join(map(str, steps))}) the tasks were scored on {items} items "
        "of each: a slice, so these points are not comparable with a number on the whole task. The horizontal lines "
        "are GPT-2 124M on the whole task (the GPT-2 paper's and lm-evaluation-harness's numbers), the star this "
        "model after training on the items the table above counts."
    )


def render_card(
    summary: RunSummary,
    *,
    repo_id: str | None = None,
    license: str | None = None,
    base_model: str | None = None,
    datasets: list[str] | None = None,
    has_plot: bool = False,
    has_events: bool = False,
    has_eval_plot: bool = False,
) -> str:
    """The full README.md text: YAML metadata, then the training summary, curves, evaluation and usage."""
    repo = repo_id or _PLACEHOLDER_REPO
    data = card_metadata(
        summary,
        model_name=repo_id or summary.section("run").get("name") or "hf_gpt2-model",
        license=license,
        base_model=base_model,
        datasets=datasets,
    )
    title = repo_id.split("/")[-1] if repo_id else (summary.section("run").get("name") or "hf_gpt2 model")
    parts = [f"# {title}", _model_line(summary, data.base_model), "## Training", _training_table(summary)]
    if has_plot:
        parts.append(f"![Training and validation loss]({LOSS_PNG})")
    extras = []
    if has_events:
        extras.append(f"the TensorBoard events are in `{EVENTS_DIR}/` (the Hub shows them under *Metrics*)")
    if summary.recipe_text:
        extras.append(f"the resolved recipe is `{RECIPE}`; `accelerate launch train.py {RECIPE}` reruns it")
    if extras:
        parts.append("In this repository " + "; ".join(extras) + ".")
    if summary.recipe_text:
        parts.append(
            f"<details><summary>Recipe</summary>\n\n```yaml\n{summary.recipe_text.strip()}\n```\n\n</details>"
        )
    parts += ["## Evaluation", _eval_table(summary)]
    if has_eval_plot:
        parts += [_during_training_text(summary), f"![Benchmarks during training]({EVAL_PNG})"]
    parts += ["## How to use", _usage(repo)]
    body = "\n\n".join(parts) + "\n"
    return f"---\n{data.to_yaml()}\n---\n{GENERATED_MARKER}\n\n{body}"

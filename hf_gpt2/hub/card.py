"""The model card (a release's README.md) and the folder that is uploaded.

Everything comes from files, so a card can be written for any release, pushed or not: the release's ``config.json``
and ``model.safetensors`` header, the resolved ``recipe.yaml``, ``eval.json`` and the TensorBoard events of the run.
The release then carries ``README.md``, ``loss_curves.png``, ``recipe.yaml`` and ``eval.json`` beside the weights. The
run's events (``<run>/tb/``) are uploaded beside them as ``runs/`` (the Hub shows them in its Metrics tab) without a
copy in the release folder, so ``tensorboard --logdir runs/`` shows each run once.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData
from huggingface_hub.utils import filter_repo_objects

from hf_gpt2.hub.curves import EVENTS_GLOB, event_dirs, plot_losses
from hf_gpt2.hub.references import (
    Reference,
    find_reference,
    headline_metrics,
    task_dataset,
    val_loss_reference,
)
from hf_gpt2.hub.summary import EVAL, EVENTS_DIR, RECIPE, RunSummary, gather_summary

logger = logging.getLogger(__name__)

CARD = "README.md"
LOSS_PNG = "loss_curves.png"
RELEASE_IGNORE = [".*", "*/.*", "__pycache__/*", "*/__pycache__/*", "*.pyc", "*.tmp"]
"""Never uploaded: hidden files and folders (``.tmp`` staging, editor files), Python caches."""

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
    if "val_loss" in summary.scalars:
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
                metric_value=round(summary.scalars["val_loss"], 4),
            )
        )
    for task, metrics in summary.tasks.items():
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
        rows.append(
            (
                "optimizer",
                f"AdamW, lr {optim.get('lr')} → {optim.get('min_lr')}, {optim.get('schedule')} "
                f"schedule, {optim.get('warmup_steps')} warmup steps, "
                f"weight decay {optim.get('weight_decay')}",
            )
        )
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
    lines = ["| | |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows]
    return "\n".join(lines)


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
    if "val_loss" in summary.scalars:
        source = str(summary.section("data").get("source", ""))
        ref = Reference(lm_eval=val_loss_reference(source))
        rows.append(_eval_row("validation", "loss", summary.scalars["val_loss"], ref, None))
    for task, metrics in summary.tasks.items():
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


def render_card(
    summary: RunSummary,
    *,
    repo_id: str | None = None,
    license: str | None = None,
    base_model: str | None = None,
    datasets: list[str] | None = None,
    has_plot: bool = False,
    has_events: bool = False,
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
    parts += ["## Evaluation", _eval_table(summary), "## How to use", _usage(repo)]
    body = "\n\n".join(parts) + "\n"
    return f"---\n{data.to_yaml()}\n---\n{GENERATED_MARKER}\n\n{body}"


# ----------------------------------------------------------------------------------------------- files


def write_model_card(
    release_dir: str | os.PathLike,
    run_dir: str | os.PathLike | None = None,
    *,
    base_model: str | None = None,
    datasets: list[str] | None = None,
    eval_results: dict[str, Any] | None = None,
    repo_id: str | None = None,
    license: str | None = None,
) -> Path:
    """Write the release's README.md and what it shows: loss_curves.png, recipe.yaml and eval.json.

    Call it on the main process once the release and ``eval.json`` are written. Without ``run_dir`` the card is
    built from the copies already in the release (a downloaded release keeps its ``runs/`` events).

    Args:
        release_dir: the release folder (``runs/<name>/final``).
        run_dir: the run folder (``recipe.yaml``, ``eval.json``, ``tb/``, ``checkpoints/``).
        base_model: Hub id of the model this one was finetuned from (default: the recipe's ``model.init`` when it
            is a Hub id).
        datasets: Hub dataset ids trained on (default: the recipe's ``data.source`` when it is ``hub:<id>``).
        eval_results: ``{"val_loss": x, task: {metric: value, "n": count}}`` instead of ``eval.json``.
        repo_id: the Hub id used in the usage snippets (default: the recipe's ``hub.repo_id``).
        license: the card's license (default: the recipe's ``hub.license``, else ``mit``).

    Returns:
        The README.md path.
    """
    release = Path(release_dir)
    if not release.is_dir():
        from hf_gpt2.errors import CheckpointError

        raise CheckpointError(f"release folder {release} does not exist")
    run = Path(run_dir) if run_dir is not None else None
    if run is not None:
        _copy_run_files(run, release)
    summary = gather_summary(release, run, eval_results=eval_results)
    if eval_results is not None:
        (release / EVAL).write_text(json.dumps(eval_results, indent=1), encoding="utf-8")
    try:
        plot = plot_losses(summary.curves, release / LOSS_PNG, title=repo_id or summary.section("run").get("name"))
    except Exception as err:  # a broken font cache or backend must not cost the run its card
        logger.warning("could not draw %s (%s); the card goes without it", LOSS_PNG, err)
        plot = None
    card = render_card(
        summary,
        repo_id=repo_id or summary.section("hub").get("repo_id"),
        license=license,
        base_model=base_model,
        datasets=datasets,
        has_plot=plot is not None,
        has_events=bool(run_events(release, run)),
    )
    path = release / CARD
    path.write_text(card, encoding="utf-8")
    logger.info("model card written to %s", path)
    return path


def _copy_run_files(run: Path, release: Path) -> None:
    if (run / RECIPE).is_file() and not (release / RECIPE).is_file():  # the release's own copy wins
        shutil.copy2(run / RECIPE, release / RECIPE)
    if (run / EVAL).is_file():  # eval.json is written after the release, so the run's copy is the newest
        shutil.copy2(run / EVAL, release / EVAL)


def is_generated_card(path: str | os.PathLike) -> bool:
    """True when ``path`` is a README.md that hf_gpt2 wrote and nobody marked as hand-edited."""
    try:
        return GENERATED_MARKER in Path(path).read_text(encoding="utf-8")
    except OSError:
        return False


def run_events(release_dir: str | os.PathLike, run_dir: str | os.PathLike | None = None) -> dict[str, Path]:
    """The TensorBoard event files a push uploads, as ``{path in the repo: local file}`` (repo paths under ``runs/``).

    They are the run's own ``tb/`` files when there is a run folder with events; otherwise whatever the release
    already holds under ``runs/`` (a release downloaded from the Hub, or written by an older hf_gpt2).
    """
    release = Path(release_dir)
    source = Path(run_dir) / "tb" if run_dir is not None else None
    if source is None or not event_dirs(source):
        source = release / EVENTS_DIR
    files = sorted(p for p in source.rglob(EVENTS_GLOB) if p.is_file()) if source.is_dir() else []
    return {f"{EVENTS_DIR}/{p.relative_to(source).as_posix()}": p for p in files}


def upload_manifest(release_dir: str | os.PathLike, run_dir: str | os.PathLike | None = None) -> dict[str, Path]:
    """The exact files a push uploads, as ``{path in the repo: local file}`` sorted by repo path.

    The release's files (hidden files and caches left out, see ``RELEASE_IGNORE``) and the run's TensorBoard events
    under ``runs/`` (:func:`run_events`). With a run folder, an older copy of the events inside the release is left
    out (the run's own files are the newest) and named in the log: TensorBoard shows that run twice until it is
    deleted.
    """
    root = Path(release_dir)
    events = run_events(root, run_dir)
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    kept = filter_repo_objects(files, ignore_patterns=RELEASE_IGNORE)
    manifest = {name: root / name for name in kept if not name.startswith(f"{EVENTS_DIR}/")}
    old_copy = root / EVENTS_DIR
    if run_dir is not None and event_dirs(Path(run_dir) / "tb") and event_dirs(old_copy):
        logger.warning(
            "%s is an old copy of the run's TensorBoard events (`tensorboard --logdir` shows the run twice); "
            "the push uploads %s instead: delete the copy",
            old_copy,
            Path(run_dir) / "tb",
        )
    manifest.update(events)
    return dict(sorted(manifest.items()))


def stage_release(
    release_dir: str | os.PathLike,
    run_dir: str | os.PathLike | None = None,
    *,
    rewrite_card: bool | None = None,
    **card_kwargs: Any,
) -> dict[str, Path]:
    """Write the model card a push needs and return the push's files (:func:`upload_manifest`).

    The card is (re)written when ``rewrite_card`` is true (by default: when ``run_dir`` is given) or when the release
    has no README.md yet; otherwise a card already in the release is kept as it is, so hand edits survive.
    """
    release = Path(release_dir)
    if rewrite_card is None:
        rewrite_card = run_dir is not None
    if rewrite_card or not (release / CARD).is_file():
        write_model_card(release, run_dir, **card_kwargs)
    card = ModelCard.load(release / CARD)  # fails early on metadata the Hub would refuse
    if card.data.library_name is None and not card.data.to_dict():
        logger.warning("%s has no YAML metadata", release / CARD)
    return upload_manifest(release, run_dir)

"""``eval.json``: what a finished run reports, one schema for the writer (the pipeline) and every reader (the card).

The file is one JSON object: the validation loss and the run's counters at the top level, then one entry per
benchmark task with its metrics (``run_tasks``' ``{task: {metric: value, "n": count}}``; a task whose name is also a
field, the ``val_loss`` task, goes under ``"tasks": {...}``)::

    {"val_loss": 3.21, "val_perplexity": 24.8, "val_bits_per_byte": 1.12, "step": 30, "tokens_seen": 122880,
     "train_time_s": 81.5, "wall_time_s": 96.0, "device": "cpu (x86_64)", "num_processes": 1, "mixed_precision": "no",
     "lambada_openai": {"acc": 0.30, "ppl": 48.7, "n": 500.0}}

A run with ``eval.every`` adds ``history``: the evaluations of ``eval.tasks`` during training, one point per task and
evaluation, each on the first ``limit`` items only (not comparable with a published number on the whole task)::

    "history": [{"step": 10, "tokens_seen": 40960, "task": "hellaswag", "limit": 200, "n": 200,
                 "metrics": {"acc": 0.26, "acc_norm": 0.27}}, ...]

Every field is optional when reading, so partial reports (a card written from given results, an ``eval.json`` written
before ``history`` existed) load too.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hf_gpt2.errors import HfGPT2Error
from hf_gpt2.folders import write_text_atomically

EVAL_JSON = "eval.json"


class EvalReportError(HfGPT2Error):
    """An ``eval.json`` that does not follow the schema (not an object, a value of the wrong type)."""


@dataclass(frozen=True, kw_only=True)
class EvalPoint:
    """One task's scores at one evaluation during training (``eval.every``)."""

    step: int
    """The optimizer step the model had reached."""
    tokens_seen: int
    """Tokens trained on by then, over all processes."""
    task: str
    """The benchmark task."""
    limit: int | None
    """The evaluation scored the task's first ``limit`` items (None: all of them)."""
    n: int
    """Items scored."""
    metrics: dict[str, float]
    """Metric → value (``run_tasks``' numbers without the bookkeeping ``n``)."""

    def to_json(self) -> dict[str, Any]:
        """The point's JSON object in ``eval.json``'s ``history``."""
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Any, where: str = f"{EVAL_JSON}: history") -> EvalPoint:
        """Read one point of ``history``.

        Raises:
            EvalReportError: it is not an object with these fields of these types.
        """
        names = [f.name for f in dataclasses.fields(cls)]
        if not isinstance(data, Mapping) or set(data) != set(names):
            raise EvalReportError(f"{where}: {data!r:.120} should be an object with exactly the keys {names}")
        metrics = data["metrics"]
        if not isinstance(metrics, Mapping) or not all(_is_number(v) for v in metrics.values()):
            raise EvalReportError(f"{where}: metrics={metrics!r:.120} should map metric names to numbers")
        missing = [name for name in ("step", "tokens_seen", "task", "n") if data[name] is None]
        if missing:
            raise EvalReportError(f"{where}: {', '.join(missing)} may not be null")
        limit = data["limit"]
        return cls(
            step=_checked(data["step"], "int", f"{where}: step"),
            tokens_seen=_checked(data["tokens_seen"], "int", f"{where}: tokens_seen"),
            task=_checked(data["task"], "str", f"{where}: task"),
            limit=None if limit is None else _checked(limit, "int", f"{where}: limit"),
            n=_checked(data["n"], "int", f"{where}: n"),
            metrics={str(k): float(v) for k, v in metrics.items()},
        )


@dataclass(kw_only=True)
class EvalReport:
    """A run's ``eval.json``: its final validation loss, its counters and its benchmark results."""

    val_loss: float | None = None
    """Mean cross-entropy (nats per token) on the validation split at the last step."""
    val_perplexity: float | None = None
    """``exp(val_loss)``."""
    val_bits_per_byte: float | None = None
    """Bits per UTF-8 byte of the validation text at the last step (the same text for any tokenizer, so runs with
    different vocabularies compare); absent for tokenizers that are not byte-level."""
    step: int | None = None
    """Optimizer steps trained."""
    tokens_seen: int | None = None
    """Tokens trained on, over all processes."""
    train_time_s: float | None = None
    """Seconds spent in optimizer steps."""
    wall_time_s: float | None = None
    """Seconds from the start of the run to its report."""
    device: str | None = None
    """The training device, e.g. ``NVIDIA H100 80GB HBM3`` or ``cpu (x86_64)``."""
    num_processes: int | None = None
    """Processes that trained."""
    mixed_precision: str | None = None
    """Accelerate's mixed precision (``no``, ``bf16``, ``fp16``)."""
    tasks: dict[str, dict[str, float]] = field(default_factory=dict)
    """Benchmark task → metric → value (``n``: how many items were scored); written at the top level."""
    history: list[EvalPoint] = field(default_factory=list)
    """The evaluations of ``eval.tasks`` during training (``eval.every``), oldest first; empty without them."""

    @classmethod
    def for_run(cls, val_loss: float, **facts: Any) -> EvalReport:
        """A report with ``val_loss`` and its perplexity, plus the given counters."""
        return cls(val_loss=val_loss, val_perplexity=math.exp(min(val_loss, 50.0)), **facts)

    def to_json(self) -> dict[str, Any]:
        """The JSON object of ``eval.json``: the set fields, then the tasks at the top level."""
        facts = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in _NOT_FACTS}
        history = {"history": [point.to_json() for point in self.history]} if self.history else {}
        clashing = {name: scores for name, scores in self.tasks.items() if name in _RESERVED}
        plain = {name: scores for name, scores in self.tasks.items() if name not in _RESERVED}
        nested = {"tasks": clashing} if clashing else {}
        return {**{k: v for k, v in facts.items() if v is not None}, **history, **nested, **plain}

    @classmethod
    def from_json(cls, data: Mapping[str, Any], where: str = EVAL_JSON) -> EvalReport:
        """Read the JSON object of ``eval.json``: known keys are fields, objects are tasks.

        Raises:
            EvalReportError: it is not an object, or a field or metric has a value of the wrong type.
        """
        if not isinstance(data, Mapping):
            raise EvalReportError(f"{where} is not a JSON object")
        fields = {f.name: f for f in dataclasses.fields(cls) if f.name not in _NOT_FACTS}
        values: dict[str, Any] = {}
        tasks: dict[str, dict[str, float]] = {}
        for key, value in data.items():
            if key == "tasks" and isinstance(value, Mapping):
                tasks.update({name: _scores(scores, f"{where}: tasks.{name}") for name, scores in value.items()})
            elif key == "history":
                if not isinstance(value, list):
                    raise EvalReportError(f"{where}: history should be a list of points, got {value!r:.80}")
                values["history"] = [EvalPoint.from_json(p, f"{where}: history[{i}]") for i, p in enumerate(value)]
            elif key in fields:
                values[key] = _checked(value, fields[key].type, f"{where}: {key}")
            elif isinstance(value, Mapping):
                tasks[key] = _scores(value, f"{where}: {key}")
            else:
                raise EvalReportError(
                    f"{where}: {key}={value!r} is neither a field of eval.json ({', '.join(fields)}) nor a task"
                )
        return cls(**values, tasks=tasks)

    def write(self, path: Path) -> Path:
        """Write the report as ``path`` (atomically)."""
        return write_text_atomically(path, json.dumps(self.to_json(), indent=2) + "\n")

    @classmethod
    def read(cls, path: Path) -> EvalReport:
        """Read ``path``.

        Raises:
            EvalReportError: the file is unreadable or does not follow the schema.
        """
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            raise EvalReportError(f"{path} is unreadable ({err})") from err
        return cls.from_json(data, where=str(path))


_NOT_FACTS = frozenset({"tasks", "history"})
"""Fields that are not top-level scalars of ``eval.json``."""
_RESERVED = frozenset({f.name for f in dataclasses.fields(EvalReport)})
"""Top-level keys that are not tasks: a task of that name (``val_loss``) is written under ``"tasks"`` instead."""


def _scores(value: Any, where: str) -> dict[str, float]:
    if not isinstance(value, Mapping):
        raise EvalReportError(f"{where}={value!r:.80} should be an object of metric values")
    return {name: float(v) for name, v in value.items() if _is_number(v)}


def _checked(value: Any, annotation: str, where: str) -> Any:
    if value is None:
        return None
    if "float" in annotation and _is_number(value):
        return float(value)
    if "int" in annotation and _is_number(value) and float(value).is_integer():
        return int(value)
    if "str" in annotation and isinstance(value, str):
        return value
    raise EvalReportError(f"{where}={value!r} should be {annotation.replace(' | None', '')}")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)

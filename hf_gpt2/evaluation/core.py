"""The CORE score: DCLM's yardstick for "GPT-2 grade" (Li et al. 2024), computed the way nanochat computes it.

CORE is the mean over 22 in-context-learning tasks of the accuracy centred by the task's random baseline,
``(acc − b) / (1 − b)``; GPT-2 124M scores 0.1139 and GPT-2 1.5B 0.2565 (nanochat, on the OpenAI weights). The
tasks, their few-shot counts and continuation delimiters come from the eval bundle's ``core.yaml`` (checked against
DCLM's definition: the 22 ``low_variance_datasets`` with their shot counts and task types), the baselines from its
``eval_meta_data.csv``, the items from ``eval_data/<category>/<task>.jsonl``.

Protocol (nanochat's ``core_eval.py``, item for item):

- **Order and --limit.** The items of a task are shuffled with ``random.Random(1337)``; ``--limit N`` keeps the
  first N (nanochat's ``max_per_task``), and few-shot examples are drawn from the items kept.
- **Few-shot examples.** For item ``i``, ``random.Random(1234 + i).sample`` of the other items; each renders as
  ``<question><delimiter><right answer>`` followed by a blank line (``"\\n\\n"``), before the item itself.
- **Multiple choice** (``query``, ``choices``, ``gold``): one prompt per choice, ``<shots><query><delimiter>
  <choice>``; the tokens after the prompts' common token prefix are each choice's continuation, and the choice with
  the lowest mean loss per continuation token wins.
- **Schema** (``context_options``, ``continuation``, ``gold``): one prompt per context option,
  ``<shots><option><delimiter><continuation>``; the prompts' common token suffix is scored, lowest mean loss wins.
- **Language modelling** (``context``, ``continuation``): ``<shots><context stripped><delimiter>`` (the whole prompt
  stripped) then the continuation; right when every continuation token is the greedy choice.
- **Tokens.** Each prompt is the BOS token (the prefix token: BOS, else EOS; GPT-2's ``<|endoftext|>``) followed by the
  prompt's tokens without special tokens. A prompt longer than the model's context keeps its last ``max_length``
  tokens (nanochat's cropping).

The bundle: nanochat's ``eval_bundle.zip`` (the default source, downloaded once into the Hugging Face cache folder),
or ``--data core=PATH`` with a local copy (the zip, the ``eval_bundle`` folder or a folder holding it), or
``--data core=hf://datasets/OWNER/REPO`` for a copy in a Hub dataset repo.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import random
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import yaml
from huggingface_hub import constants, snapshot_download
from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

from hf_gpt2.errors import DataError
from hf_gpt2.evaluation.base import EvalOptions, Task
from hf_gpt2.evaluation.scoring import LoglikelihoodRequest, LoglikelihoodScorer

logger = logging.getLogger(__name__)

EVAL_BUNDLE_URL = "https://karpathy-public.s3.us-west-2.amazonaws.com/eval_bundle.zip"
"""nanochat's CORE eval bundle (``scripts/base_eval.py``): ``eval_bundle/`` with ``core.yaml``,
``eval_meta_data.csv`` and ``eval_data/``."""
HUB_PREFIX = "hf://datasets/"

MULTIPLE_CHOICE, SCHEMA, LANGUAGE_MODELING = "multiple_choice", "schema", "language_modeling"
CORE_TASKS: dict[str, tuple[str, int]] = {
    "hellaswag_zeroshot": (MULTIPLE_CHOICE, 0),
    "jeopardy": (LANGUAGE_MODELING, 10),
    "bigbench_qa_wikidata": (LANGUAGE_MODELING, 10),
    "arc_easy": (MULTIPLE_CHOICE, 10),
    "arc_challenge": (MULTIPLE_CHOICE, 10),
    "copa": (MULTIPLE_CHOICE, 0),
    "commonsense_qa": (MULTIPLE_CHOICE, 10),
    "piqa": (MULTIPLE_CHOICE, 10),
    "openbook_qa": (MULTIPLE_CHOICE, 0),
    "lambada_openai": (LANGUAGE_MODELING, 0),
    "hellaswag": (MULTIPLE_CHOICE, 10),
    "winograd": (SCHEMA, 0),
    "winogrande": (SCHEMA, 0),
    "bigbench_dyck_languages": (LANGUAGE_MODELING, 10),
    "agi_eval_lsat_ar": (MULTIPLE_CHOICE, 3),
    "bigbench_cs_algorithms": (LANGUAGE_MODELING, 10),
    "bigbench_operators": (LANGUAGE_MODELING, 10),
    "bigbench_repeat_copy_logic": (LANGUAGE_MODELING, 10),
    "squad": (LANGUAGE_MODELING, 10),
    "coqa": (LANGUAGE_MODELING, 0),
    "boolq": (MULTIPLE_CHOICE, 10),
    "bigbench_language_identification": (MULTIPLE_CHOICE, 10),
}
"""DCLM's CORE: the 22 ``low_variance_datasets`` of ``eval/additional_aggregation.json`` with the task type and shot
count of ``eval/eval_meta_data.csv``, in ``core.yaml``'s order."""
ITEM_FIELDS = {
    MULTIPLE_CHOICE: ("query", "choices", "gold"),
    SCHEMA: ("context_options", "continuation", "gold"),
    LANGUAGE_MODELING: ("context", "continuation"),
}
SHUFFLE_SEED = 1337
FEWSHOT_SEED = 1234


@dataclass(frozen=True, slots=True)
class CoreTaskSpec:
    """One CORE task as the bundle's ``core.yaml`` defines it, with its random baseline (a fraction)."""

    label: str
    dataset_uri: str
    task_type: str
    num_fewshot: int
    continuation_delimiter: str
    random_baseline: float


class Bundle:
    """Read access to an eval bundle: a folder, or a zip whose files may sit under ``eval_bundle/``."""

    def __init__(self, root: Path) -> None:
        if root.is_dir() and not _has_core_yaml(root) and (root / "eval_bundle.zip").is_file():
            root = root / "eval_bundle.zip"
        self.root = root
        self._zip: zipfile.ZipFile | None = None
        if root.is_file():
            if not zipfile.is_zipfile(root):
                raise DataError(f"core: {root} is neither a folder nor a zip; pass the eval bundle: --data core=PATH")
            self._zip = zipfile.ZipFile(root)
            names = set(self._zip.namelist())
            self._prefix = next((p for p in ("", "eval_bundle/") if f"{p}core.yaml" in names), None)
        else:
            self._prefix = next((p for p in ("", "eval_bundle/") if (root / p / "core.yaml").is_file()), None)
        if self._prefix is None:
            raise DataError(
                f"core: {root} is not a CORE eval bundle (no core.yaml in it or in its eval_bundle/ folder); pass "
                f"nanochat's eval_bundle.zip or its unpacked folder ({EVAL_BUNDLE_URL})"
            )

    def read_text(self, name: str) -> str:
        """The text of a bundle file (``core.yaml``, ``eval_data/...``)."""
        try:
            if self._zip is not None:
                return self._zip.read(f"{self._prefix}{name}").decode("utf-8")
            return (self.root / self._prefix / name).read_text(encoding="utf-8")
        except (KeyError, FileNotFoundError) as err:
            raise DataError(f"core: the eval bundle {self.root} has no {name}") from err

    def task_specs(self) -> list[CoreTaskSpec]:
        """The 22 tasks of ``core.yaml`` with the baselines of ``eval_meta_data.csv``, checked against CORE."""
        config = yaml.safe_load(self.read_text("core.yaml")) or {}
        tasks = config.get("icl_tasks") if isinstance(config, dict) else None
        if not isinstance(tasks, list):
            raise DataError(f"core: {self.root}'s core.yaml has no icl_tasks list")
        baselines = {
            row["Eval Task"]: row["Random baseline"]
            for row in csv.DictReader(io.StringIO(self.read_text("eval_meta_data.csv")))
        }
        specs = [self._spec(task, baselines) for task in tasks]
        labels = [spec.label for spec in specs]
        if sorted(labels) != sorted(CORE_TASKS):
            missing, extra = sorted(set(CORE_TASKS) - set(labels)), sorted(set(labels) - set(CORE_TASKS))
            raise DataError(
                f"core: {self.root}'s core.yaml does not list CORE's 22 tasks (missing {missing}, extra {extra}); "
                "pass nanochat's eval bundle"
            )
        return specs

    def _spec(self, task: Any, baselines: dict[str, str]) -> CoreTaskSpec:
        if not isinstance(task, dict) or "label" not in task:
            raise DataError(f"core: an icl_tasks entry of {self.root}'s core.yaml has no label: {task!r}")
        label = str(task["label"])
        shots = task.get("num_fewshot", [0])
        spec = CoreTaskSpec(
            label=label,
            dataset_uri=str(task.get("dataset_uri", "")),
            task_type=str(task.get("icl_task_type", "")),
            num_fewshot=int(shots[0] if isinstance(shots, list) else shots),
            continuation_delimiter=str(task.get("continuation_delimiter", " ")),
            random_baseline=0.01 * float(baselines.get(label, "nan")),
        )
        expected = CORE_TASKS.get(label)
        if expected is not None and expected != (spec.task_type, spec.num_fewshot):
            raise DataError(
                f"core: {self.root}'s core.yaml defines {label} as {spec.task_type}, {spec.num_fewshot}-shot; CORE "
                f"defines it as {expected[0]}, {expected[1]}-shot"
            )
        if label not in baselines:
            raise DataError(f"core: {self.root}'s eval_meta_data.csv has no random baseline for {label}")
        return spec

    def items(self, spec: CoreTaskSpec) -> list[dict[str, Any]]:
        """The task's items, one JSON object per line of its jsonl, checked for the fields of its type."""
        path = f"eval_data/{spec.dataset_uri}"
        lines = [line for line in self.read_text(path).split("\n") if line.strip()]
        try:
            items = [json.loads(line) for line in lines]
        except json.JSONDecodeError as err:
            raise DataError(f"core: {path} in {self.root} is not JSON lines ({err})") from err
        if not items:
            raise DataError(f"core: {path} in {self.root} holds no items")
        missing = [f for f in ITEM_FIELDS[spec.task_type] if f not in items[0]]
        if missing:
            raise DataError(f"core: {spec.label} items need {missing} ({path} has {sorted(items[0])})")
        return items


def _has_core_yaml(folder: Path) -> bool:
    return (folder / "core.yaml").is_file() or (folder / "eval_bundle" / "core.yaml").is_file()


def render_prompts(spec: CoreTaskSpec, item: dict[str, Any], shots: Sequence[dict[str, Any]]) -> list[str]:
    """The prompts of one item: one per choice (multiple choice) or context option (schema); for language modelling
    the prompt without and with the continuation."""
    delimiter = spec.continuation_delimiter
    if spec.task_type == MULTIPLE_CHOICE:
        prefix = "".join(f"{ex['query']}{delimiter}{ex['choices'][ex['gold']]}\n\n" for ex in shots)
        return [f"{prefix}{item['query']}{delimiter}{choice}" for choice in item["choices"]]
    if spec.task_type == SCHEMA:
        prefix = "".join(f"{ex['context_options'][ex['gold']]}{delimiter}{ex['continuation']}\n\n" for ex in shots)
        return [f"{prefix}{option}{delimiter}{item['continuation']}" for option in item["context_options"]]
    prefix = "".join(f"{str(ex['context']).strip()}{delimiter}{ex['continuation']}\n\n" for ex in shots)
    question = f"{prefix}{str(item['context']).strip()}{delimiter}"
    return [question.strip(), f"{question}{item['continuation']}"]


def common_prefix_length(sequences: Sequence[Sequence[int]]) -> int:
    """How many leading tokens all sequences share."""
    shortest = min(len(s) for s in sequences)
    return next((i for i in range(shortest) if len({s[i] for s in sequences}) > 1), shortest)


def common_suffix_length(sequences: Sequence[Sequence[int]]) -> int:
    """How many trailing tokens all sequences share."""
    return common_prefix_length([list(reversed(s)) for s in sequences])


def scored_spans(spec: CoreTaskSpec, tokens: list[list[int]]) -> list[tuple[list[int], int, int]]:
    """(tokens, start, end) of each sequence to score: tokens[start:end] are the continuation."""
    if spec.task_type == MULTIPLE_CHOICE:
        start = common_prefix_length(tokens)
        return [(t, start, len(t)) for t in tokens]
    if spec.task_type == SCHEMA:
        suffix = common_suffix_length(tokens)
        return [(t, len(t) - suffix, len(t)) for t in tokens]
    without, whole = tokens
    if len(without) >= len(whole) or whole[: len(without)] != without:
        raise DataError(
            f"core: {spec.label}: the prompt without its continuation does not tokenize as a prefix of the prompt "
            "with it"
        )
    return [(whole, len(without), len(whole))]


def crop(tokens: list[int], start: int, end: int, max_length: int) -> tuple[list[int], int, int]:
    """Keep the last ``max_length`` tokens of a sequence longer than that, shifting its span (nanochat's cropping)."""
    if len(tokens) <= max_length:
        return tokens, start, end
    cut = len(tokens) - max_length
    return tokens[cut:], start - cut, end - cut


class Core(Task):
    name: ClassVar[str] = "core"
    summary: ClassVar[str] = "CORE (DCLM/nanochat): 22 few-shot tasks, accuracies centred by their random baselines"
    accepts_hub_paths: ClassVar[bool] = True

    def has_default_source(self) -> bool:
        return True  # nanochat's eval bundle

    def describe_source(self, data: str | None, options: EvalOptions | None = None) -> str:
        return data if data is not None else EVAL_BUNDLE_URL

    def data_label(self, data: str | None, options: EvalOptions | None = None) -> str:
        return data if data is not None else "nanochat eval_bundle.zip"

    def run(
        self, scorer: LoglikelihoodScorer, data: str | None, *, limit: int | None, options: EvalOptions
    ) -> dict[str, float]:
        bundle = Bundle(locate_bundle(data))
        results: dict[str, float] = {}
        centered, total = [], 0
        for spec in bundle.task_specs():
            accuracy, n = self.score_task(scorer, spec, bundle.items(spec), limit)
            results[f"acc_{spec.label}"] = accuracy
            results[f"centered_{spec.label}"] = (accuracy - spec.random_baseline) / (1.0 - spec.random_baseline)
            centered.append(results[f"centered_{spec.label}"])
            total += n
            if scorer.is_main_process:
                logger.info(
                    "core: %s (%d-shot, %s): accuracy %.4f, centred %.4f, n=%d",
                    spec.label,
                    spec.num_fewshot,
                    spec.task_type,
                    accuracy,
                    results[f"centered_{spec.label}"],
                    n,
                )
        return {"core": sum(centered) / len(centered), **results, "n": float(total)}

    def score_task(
        self, scorer: LoglikelihoodScorer, spec: CoreTaskSpec, items: list[dict[str, Any]], limit: int | None
    ) -> tuple[float, int]:
        """The accuracy of one task over its first ``limit`` shuffled items, and how many were scored."""
        items = list(items)
        random.Random(SHUFFLE_SEED).shuffle(items)
        items = items if limit is None else items[:limit]
        if spec.num_fewshot >= len(items):
            raise DataError(
                f"core: {spec.label} draws {spec.num_fewshot} few-shot examples from the other items, but only "
                f"{len(items)} are scored; use --limit {spec.num_fewshot + 1} or more"
            )
        requests: list[LoglikelihoodRequest] = []
        owners: list[int] = []
        for index in range(len(items)):
            for tokens, start, end in self._sequences(scorer, spec, items, index):
                requests.append(LoglikelihoodRequest(context=tokens[:start], continuation=tokens[start:end]))
                owners.append(index)
        results = scorer.loglikelihood(requests, desc=f"core/{spec.label}")
        per_item: list[list[Any]] = [[] for _ in items]
        for owner, result in zip(owners, results, strict=True):
            per_item[owner].append(result)
        judge = self._is_right_lm if spec.task_type == LANGUAGE_MODELING else self._is_right_choice
        right = [judge(item, scored) for item, scored in zip(items, per_item, strict=True)]
        return sum(right) / len(right), len(items)

    def _sequences(
        self, scorer: LoglikelihoodScorer, spec: CoreTaskSpec, items: list[dict[str, Any]], index: int
    ) -> list[tuple[list[int], int, int]]:
        shots: list[dict[str, Any]] = []
        if spec.num_fewshot > 0:
            others = [i for i in range(len(items)) if i != index]
            shots = [items[i] for i in random.Random(FEWSHOT_SEED + index).sample(others, spec.num_fewshot)]
        prompts = render_prompts(spec, items[index], shots)
        tokens = [[scorer.prefix_token_id, *ids] for ids in scorer.encode_batch(prompts)]
        spans = [crop(t, s, e, scorer.max_length) for t, s, e in scored_spans(spec, tokens)]
        if any(start < 1 for _, start, _ in spans):
            raise DataError(
                f"core: {spec.label} item {index}: its continuation is longer than the model's context of "
                f"{scorer.max_length} tokens"
            )
        return spans

    @staticmethod
    def _is_right_choice(item: dict[str, Any], scored: list[Any]) -> bool:
        # The lowest mean loss per continuation token; the first of equal ones (an empty continuation is NaN).
        mean_losses = [-r.log_likelihood / r.num_tokens if r.num_tokens else float("nan") for r in scored]
        return mean_losses.index(min(mean_losses)) == int(item["gold"])

    @staticmethod
    def _is_right_lm(item: dict[str, Any], scored: list[Any]) -> bool:
        [result] = scored
        return bool(result.is_greedy)


def locate_bundle(data: str | None, *, download: Callable[[Path], None] | None = None) -> Path:
    """The local path of the eval bundle: ``data`` itself, a Hub dataset repo's snapshot, or nanochat's zip in the
    cache (downloaded on first use unless the Hub is offline)."""
    if data is not None and data.startswith(HUB_PREFIX):
        return _hub_snapshot(data[len(HUB_PREFIX) :])
    if data is not None:
        path = Path(data).expanduser()
        if not path.exists():
            raise DataError(f"core: {data!r} does not exist; pass the eval bundle: --data core=eval_bundle.zip")
        return path
    cached = Path(constants.HF_HOME) / "hf_gpt2" / "eval_bundle.zip"
    if cached.is_file():
        return cached
    if constants.is_offline_mode():
        raise DataError(
            f"core: the eval bundle is not in the cache ({cached}) and HF_HUB_OFFLINE is set; download "
            f"{EVAL_BUNDLE_URL} elsewhere and pass --data core=PATH"
        )
    cached.parent.mkdir(parents=True, exist_ok=True)
    (download or _download)(cached)
    return cached


def _download(target: Path) -> None:
    logger.info("core: downloading %s to %s", EVAL_BUNDLE_URL, target)
    partial = target.with_name(target.name + ".part")
    try:
        with urllib.request.urlopen(EVAL_BUNDLE_URL, timeout=60) as response, partial.open("wb") as out:
            while chunk := response.read(1 << 20):
                out.write(chunk)
    except (urllib.error.URLError, OSError) as err:
        partial.unlink(missing_ok=True)
        raise DataError(
            f"core: could not download {EVAL_BUNDLE_URL} ({err}); download it elsewhere and pass --data core=PATH"
        ) from err
    if not zipfile.is_zipfile(partial):
        partial.unlink(missing_ok=True)
        raise DataError(f"core: {EVAL_BUNDLE_URL} did not return a zip file; pass a copy with --data core=PATH")
    partial.replace(target)


def _hub_snapshot(location: str) -> Path:
    """A local snapshot of ``OWNER/REPO[@REVISION][/PATH]`` (a Hub dataset repo holding the bundle)."""
    parts = location.split("/")
    if len(parts) < 2 or not all(parts[:2]):
        raise DataError(f"core: {HUB_PREFIX}{location} names no dataset repo; use {HUB_PREFIX}OWNER/REPO[@REVISION]")
    name, _, revision = parts[1].partition("@")
    repo_id, subfolder = f"{parts[0]}/{name}", "/".join(parts[2:])
    try:
        local = snapshot_download(repo_id, repo_type="dataset", revision=revision or None)
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError, ValueError) as err:
        raise DataError(
            f"core: cannot get the eval bundle from the Hub dataset {repo_id!r} ({type(err).__name__}: {err}); "
            "without network, pass a local copy: --data core=eval_bundle.zip"
        ) from err
    return Path(local) / subfolder

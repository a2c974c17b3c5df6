"""The task registry: names, groups, and turning ``--tasks`` into a checked list of task names."""

from __future__ import annotations

import difflib
import logging
from collections.abc import Iterable, Mapping

from hf_gpt2.errors import DataError
from hf_gpt2.evaluation.base import Task
from hf_gpt2.evaluation.cbt import CBTCommonNouns, CBTNamedEntities
from hf_gpt2.evaluation.character_level import Enwik8, Text8
from hf_gpt2.evaluation.core import Core
from hf_gpt2.evaluation.errors import UnknownTaskError
from hf_gpt2.evaluation.hellaswag import HellaSwag
from hf_gpt2.evaluation.lambada import LambadaOpenAI, LambadaOpenAIPaper
from hf_gpt2.evaluation.sentence_level import OneBillionWord, PennTreebank
from hf_gpt2.evaluation.sources import resolve_path
from hf_gpt2.evaluation.val_loss import ValLoss
from hf_gpt2.evaluation.wikitext import WikiText2, WikiText103

logger = logging.getLogger(__name__)

TASKS: dict[str, Task] = {
    task.name: task
    for task in (
        LambadaOpenAI(),
        LambadaOpenAIPaper(),
        CBTCommonNouns(),
        CBTNamedEntities(),
        WikiText2(),
        WikiText103(),
        PennTreebank(),
        OneBillionWord(),
        Enwik8(),
        Text8(),
        HellaSwag(),
        ValLoss(),
        Core(),
    )
}
"""Every task by name."""

_PAPER = [
    "lambada_openai", "lambada_openai_paper", "cbt_cn", "cbt_ne", "wikitext2", "wikitext103", "ptb", "lm1b",
    "enwik8", "text8",
]  # fmt: skip
TASK_GROUPS: dict[str, list[str]] = {
    "gpt2-paper": _PAPER,
    "all": [*_PAPER, "hellaswag", "val_loss"],
}
"""Groups of tasks. Tasks without a default source (enwik8, text8, val_loss) run in a group only when data is given.
``core`` (22 few-shot tasks, an eval bundle of its own) is in no group: ask for it by name."""


def resolve_tasks(tasks: str | Iterable[str], data: Mapping[str, str] | None = None) -> list[str]:
    """Expand groups and comma lists into task names, in order, without repeats; check every name and data key.

    Raises:
        UnknownTaskError: a name that is neither a task nor a group (with the closest match), or a data key that
            is not a task.
        DataError: a data path that does not exist, or a task named explicitly that has no Hub source and no data.
    """
    data = dict(data or {})
    parts = [
        p.strip() for item in ([tasks] if isinstance(tasks, str) else tasks) for p in item.split(",") if p.strip()
    ]
    if not parts:
        raise UnknownTaskError(f"no task given; choose from {', '.join(_choices())}")
    for key, path in data.items():
        if key not in TASKS:
            raise UnknownTaskError(f"--data names an unknown task {key!r}{_did_you_mean(key)}")
        if not (TASKS[key].accepts_hub_paths and str(path).startswith("hf://")):
            resolve_path(key, path)
    names: list[str] = []
    for part in parts:
        if part in TASK_GROUPS:
            for name in TASK_GROUPS[part]:
                if not TASKS[name].has_default_source() and name not in data:
                    logger.info("%s: skipping %s (no data given: --data %s=PATH)", part, name, name)
                elif name not in names:
                    names.append(name)
        elif part in TASKS:
            if not TASKS[part].has_default_source() and part not in data:
                raise DataError(f"{part} needs data: pass --data {part}=PATH ({TASKS[part].summary})")
            if part not in names:
                names.append(part)
        else:
            raise UnknownTaskError(f"unknown task {part!r}{_did_you_mean(part)}")
    return names


def _choices() -> list[str]:
    return [*TASKS, *TASK_GROUPS]


def _did_you_mean(name: str) -> str:
    close = difflib.get_close_matches(name.lower().replace("-", "_"), [c.replace("-", "_") for c in _choices()], n=1)
    if close:
        match = next(c for c in _choices() if c.replace("-", "_") == close[0])
        return f"; did you mean {match!r}? (tasks: {', '.join(_choices())})"
    return f"; choose from {', '.join(_choices())}"

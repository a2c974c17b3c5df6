"""Is a name a local path or a Hub id? One rule for ``--model``, ``SRC``, ``model.init`` and ``tokenizer.name``.

A name that exists on disk is a local path. A missing name that looks like a path is a missing path, and is said to
be one instead of being sent to the Hub as an id (where it would fail as "Repo id must be in the form ..."): an
absolute path, one that starts with ``./``, ``../`` or ``~``, has more than one ``/``, ends with ``/``, or whose first
folder exists here (``runs/`` in ``runs/my-run``). Anything else of the form ``name`` or ``user/name`` is a Hub id.
Pure string and filesystem checks: the command line uses them while parsing.
"""

from __future__ import annotations

import re
from pathlib import Path

HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")
"""A Hub repo id to read from: ``name`` (the old canonical models, e.g. ``gpt2``) or ``user/name``."""
REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
"""A Hub repo id to push to: always ``user/name`` or ``org/name``."""


def looks_like_path(text: str) -> bool:
    """True when ``text`` can only be meant as a local path (see the module's rule)."""
    if text in (".", "..") or text.startswith(("/", "./", "../", "~")) or "\\" in text or text.endswith("/"):
        return True
    if text.count("/") >= 2:
        return True
    first, sep, _ = text.partition("/")
    return bool(sep) and Path(first).is_dir()


def is_hub_id(text: str) -> bool:
    """True when ``text`` names a Hub repo: it is not on disk, does not look like a path, and has the id's form."""
    return not Path(text).expanduser().exists() and not looks_like_path(text) and bool(HUB_ID.fullmatch(text))


def missing_source_problem(text: str, what: str, kind: str = "model folder") -> str | None:
    """None when ``text`` exists on disk or is a Hub id; else one line that names ``what`` (e.g. ``--model``).

    Args:
        text: the name as given.
        what: how the message names the setting (``--model``, ``model.init``); empty: the message starts with the
            name (argparse puts the option in front itself).
        kind: what an existing local path would be (``model folder``, ``tokenizer folder``).
    """
    if Path(text).expanduser().exists():
        return None
    name = f"{what} {text!r}" if what else repr(text)
    if looks_like_path(text):
        return f"{name} does not exist (no such file or folder); give an existing {kind} or a Hub id like user/name"
    if not HUB_ID.fullmatch(text):
        return (
            f"{name} is neither an existing {kind} nor a Hub id (a Hub id is name or user/name, of letters, "
            "digits, '-', '_' and '.')"
        )
    return None


def repo_id_problem(text: str) -> str | None:
    """None when ``text`` is a repo id a push can use (``user/name``), else why not."""
    if not REPO_ID.fullmatch(text):
        return f"{text!r} is not a Hub repo id; use the form USER/NAME or ORG/NAME"
    if "--" in text or ".." in text or text.endswith(".git") or len(text.split("/")[1]) > 96:
        return f"{text!r} is not a Hub repo id: no '--' or '..', no trailing .git, and a name of at most 96 characters"
    return None

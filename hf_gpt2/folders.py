"""Atomic writes: every folder and file hf_gpt2 publishes is written under a hidden temporary name, then renamed.

A crash or an error therefore never leaves a half-written release, token cache, SFT cache, trained tokenizer,
recipe or JSON report where a reader looks for it; the temporary folder or file is removed on the way out.

    with staged_folder(destination) as stage:      # a fresh hidden folder beside destination
        write_files(stage.path)
    stage.placed                                    # True: it became destination; False: another writer was first
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

STAGING_PREFIX = ".tmp-"
"""Names of staging folders start with this (hidden, and never uploaded)."""


@dataclass
class Stage:
    """A staging folder and, once the ``with`` block is done, whether it was placed at its destination."""

    path: Path
    placed: bool | None = None


@contextmanager
def staged_folder(destination: Path) -> Iterator[Stage]:
    """Yield an empty hidden folder beside ``destination``; publish it with :func:`replace_folder` when the block
    ends normally, delete it when the block raises.

    ``stage.placed`` is then False when another process put a ``destination`` in place meanwhile (the staging folder
    is deleted; the caller decides whether theirs will do).
    """
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = destination.parent / f"{STAGING_PREFIX}{destination.name}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    staging.mkdir()
    stage = Stage(staging)
    try:
        yield stage
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    stage.placed = replace_folder(staging, destination)


def replace_folder(staging: Path, destination: Path) -> bool:
    """Move the finished ``staging`` folder to ``destination``; an older ``destination`` is set aside first and
    deleted only once the new one is in place, so a crash never leaves a half-written folder there.

    Returns:
        True when ``staging`` became ``destination``; False when another process put a ``destination`` in place
        meanwhile (``staging`` is then deleted and the caller decides whether theirs will do).

    Raises:
        OSError: the move failed for another reason; the older folder is back in place.
    """
    old = None
    if destination.exists():
        old = destination.with_name(f".{destination.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(destination, old)
    try:
        os.replace(staging, destination)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
        if not destination.exists():  # not another writer: restore the older folder and report
            if old is not None:
                os.replace(old, destination)
            raise
        placed = False
    else:
        placed = True
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return placed


def write_text_atomically(path: Path, text: str) -> Path:
    """Write ``text`` to a hidden temporary file beside ``path``, then rename it to ``path``; return ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{STAGING_PREFIX}{path.name}-{os.getpid()}-{uuid.uuid4().hex[:6]}")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path

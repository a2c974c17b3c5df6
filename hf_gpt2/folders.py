"""Publishing a finished folder atomically: what every writer of releases and caches in hf_gpt2 uses."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path


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

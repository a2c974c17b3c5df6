"""Atomic writes: every folder and file hf_gpt2 publishes is written under a hidden temporary name, then renamed.

A crash or an error therefore never leaves a half-written release, token cache, SFT cache, trained tokenizer,
recipe or JSON report where a reader looks for it; the temporary folder or file is removed on the way out, and one
that a killed process left behind (its name carries the host and process id) is removed by the next writer of the
same destination.

    with staged_folder(destination) as stage:      # a fresh hidden folder beside destination
        write_files(stage.path)
    stage.placed                                    # True: it became destination; False: another writer was first

A write that fails for a reason of the file system (a full or read-only disk, no permission, a file where a folder
should be) raises a :class:`~hf_gpt2.errors.StorageError` that names the path and the error in words, with the fix
(:func:`storage_errors`, :func:`as_storage_error`); the command line prints it as one line.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from hf_gpt2.errors import HfGPT2Error, StorageError

STAGING_PREFIX = ".tmp-"
"""Names of staging folders and files start with this (hidden, and never uploaded)."""
UPLOAD_STAGING_PREFIX = ".hub-push-"
"""Names of the hard-linked copies of checkpoints that wait for their background upload."""

_STAGED_NAME = re.compile(r"^(?P<role>new|old)-(?P<owner>.+)-(?P<pid>\d+)-[0-9a-f]{6}$")
"""What follows ``.tmp-<destination name>.`` in a staging name: its role, the owner (host), the process id."""

_FIXES = {
    errno.ENOSPC: "the disk is full: free space there (or choose a folder on another disk), then run the same "
    "command again",
    errno.EDQUOT: "your disk quota is used up: free space there (or choose another folder), then run the same "
    "command again",
    errno.EROFS: "that file system is read-only: choose a folder on a writable disk",
    errno.EACCES: "no permission: fix its permissions, or choose another path",
    errno.EPERM: "the operation is not permitted there: fix its permissions, or choose another path",
    errno.ENOTDIR: "a part of that path is a file, not a folder: move the file, or choose another path",
    errno.EEXIST: "a file is in the way where a folder should be: move it, or choose another path",
    errno.EISDIR: "it is a folder: give the path of a file",
    errno.ENAMETOOLONG: "the name is too long for the file system: choose a shorter path",
    errno.EFBIG: "the file is larger than that file system allows: choose a folder on another disk",
    errno.EIO: "the disk or network file system failed: check it, then run the same command again",
    errno.ESTALE: "the network file system lost the file: check the mount, then run the same command again",
}
STORAGE_ERRNOS = frozenset(_FIXES)
"""The error numbers that are about the file system where a path lives, not about a bug."""

_WRAPPED_ERRNO = re.compile(r"os error (\d+)|\[Errno (\d+)\]")
"""How Rust (safetensors) and nested Python errors quote the operating system's error."""
_SHORT_WRITE = re.compile(r"unexpected pos|file write failed|requested and \d+ written")
"""torch.save and numpy.tofile on a short write: they say that the write failed but not why."""
_LOW_SPACE = 64 << 20
"""A short write with less than this free on the disk is taken for a full disk."""


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
    is deleted; the caller decides whether theirs will do). Staging folders of ``destination`` that a dead process
    left behind are removed first.

    Raises:
        StorageError: the file system refused a write (or a read inside the block), naming ``destination`` (or the
            file read) and the error in words; the staging folder is gone.
    """
    created = missing_folders(destination.parent)
    try:
        with storage_errors(destination):
            remove_stale_staging(destination)
            destination.parent.mkdir(parents=True, exist_ok=True)
            staging = staging_path(destination)
            staging.mkdir()
        stage = Stage(staging)
        try:
            with storage_errors(destination, staging=staging):
                yield stage
                stage.placed = replace_folder(staging, destination)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    except BaseException:
        remove_empty_folders(created)
        raise


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
        old = staging_path(destination, role="old")
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
    """Write ``text`` to a hidden temporary file beside ``path``, then rename it to ``path``; return ``path``.

    Raises:
        StorageError: the file system refused the write (naming ``path``); the temporary file is gone.
    """
    with storage_errors(path):
        remove_stale_staging(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = staging_path(path)
        try:
            with storage_errors(path, staging=tmp):
                tmp.write_text(text, encoding="utf-8")
                os.replace(tmp, path)
        except BaseException:
            remove_path(tmp)
            raise
    return path


# -- staging names ---------------------------------------------------------------------------------------------------


def staging_path(destination: Path, role: str = "new") -> Path:
    """A fresh hidden name beside ``destination``: ``.tmp-<name>.<role>-<owner>-<pid>-<random>``.

    ``role`` is ``new`` (being written) or ``old`` (set aside while replaced); the owner and the process id tell
    :func:`remove_stale_staging` whether the process that wrote it is still alive.
    """
    return destination.with_name(
        f"{STAGING_PREFIX}{destination.name}.{role}-{_owner()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    )


def remove_stale_staging(destination: Path) -> list[Path]:
    """Remove the staging folders and files of ``destination`` whose process is gone; return what was removed.

    Only staging of this machine (the same host and process namespace) is judged: a process of another host on a
    shared disk may still be writing its own.
    """
    parent, prefix = destination.parent, f"{STAGING_PREFIX}{destination.name}."
    try:
        entries = [p for p in parent.iterdir() if p.name.startswith(prefix)] if parent.is_dir() else []
    except OSError:
        return []
    removed = []
    for path in entries:
        match = _STAGED_NAME.match(path.name[len(prefix) :])
        if match is None or match["owner"] != _owner() or _alive(int(match["pid"])):
            continue
        remove_path(path)
        removed.append(path)
    return removed


def missing_folders(folder: Path) -> list[Path]:
    """``folder`` and its parents that do not exist yet, deepest first (what a ``mkdir(parents=True)`` creates)."""
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing


def remove_empty_folders(folders: list[Path]) -> None:
    """Remove the given folders, deepest first, while they are empty (undoing a failed write's ``mkdir``)."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:  # not empty (something else was written there), or already gone
            break


def remove_path(path: Path) -> None:
    """Remove a file or a folder tree, as far as the file system lets it (cleaning up never hides an error)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
        return
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass


def _owner() -> str:
    """This machine, as it appears in staging names: the host name, plus the process namespace where there is one
    (containers on one host share its name but not their process ids)."""
    try:
        namespace = f".{os.stat('/proc/self/ns/pid').st_ino}"
    except OSError:
        namespace = ""
    return f"{socket.gethostname()}{namespace}"


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process: alive
        return True
    return True


# -- file-system errors ----------------------------------------------------------------------------------------------


@contextmanager
def storage_errors(path: Path, *, staging: Path | None = None) -> Iterator[None]:
    """Turn a file-system failure inside the block into a :class:`StorageError` naming the path and the fix.

    Args:
        path: what the block writes (a folder or file); named when the error names no file, or a file in
            ``staging``.
        staging: the temporary folder or file the block writes to, reported as ``path``.

    Errors that are not about the file system (see :data:`STORAGE_ERRNOS`) pass through unchanged.
    """
    try:
        yield
    except HfGPT2Error:
        raise
    except Exception as err:
        storage = as_storage_error(err, path, staging=staging)
        if storage is None:
            raise
        raise storage from err


def as_storage_error(
    err: BaseException, path: Path | None = None, *, staging: Path | None = None
) -> StorageError | None:
    """The :class:`StorageError` for ``err``, or None when ``err`` is not a file-system failure.

    An ``OSError`` counts by its ``errno``; an error of torch or safetensors that wraps one (a full disk under
    ``save_state`` or ``save_pretrained``) counts by the error it quotes, or, for a short write that quotes none,
    by the free space left on the disk.
    """
    if isinstance(err, StorageError):
        return err
    code = _errno_of(err, path)
    if code is None:
        return None
    where = _named_path(err, path, staging)
    if where is None:
        return None
    if code == errno.ENOTDIR:
        where = _file_in_the_way(where) or where
    name = errno.errorcode.get(code, str(code))
    return StorageError(f"{where}: {os.strerror(code)} ({name}); {_FIXES[code]}", path=str(where), errno=code)


def _errno_of(err: BaseException, path: Path | None) -> int | None:
    if isinstance(err, OSError) and err.errno is not None:
        return err.errno if err.errno in STORAGE_ERRNOS else None
    message = str(err)
    quoted = _WRAPPED_ERRNO.search(message)
    if quoted:
        code = int(quoted.group(1) or quoted.group(2))
        return code if code in STORAGE_ERRNOS else None
    if isinstance(err, (OSError, RuntimeError)) and _SHORT_WRITE.search(message) and path is not None:
        free = _free_bytes(path)
        return errno.ENOSPC if free is not None and free < _LOW_SPACE else errno.EIO
    return None


def _named_path(err: BaseException, path: Path | None, staging: Path | None) -> Path | None:
    """The path to name: the file the error names, unless it is inside ``staging`` (then ``path``)."""
    filename = getattr(err, "filename", None) if isinstance(err, OSError) else None
    if not filename:
        return path
    named = Path(os.fsdecode(filename))
    if staging is not None and (named == staging or staging in named.parents):
        return path
    return named


def _file_in_the_way(path: Path) -> Path | None:
    """The nearest part of ``path`` that exists and is not a folder."""
    for part in [path, *path.parents]:
        if part.exists():
            return None if part.is_dir() else part
    return None


def _free_bytes(path: Path) -> int | None:
    for part in [path, *path.parents]:
        try:
            return shutil.disk_usage(part).free
        except OSError:
            continue
    return None


def check_writable(path: Path, *, folder: bool = False) -> None:
    """Check, before any long work, that a file (or, with ``folder``, a folder) can be written at ``path``: a probe
    file is created where it will go and removed again, so nothing is left behind.

    Raises:
        StorageError: ``path`` is a folder where a file is wanted, a part of it is a file, or the disk refuses the
            write (read-only, no permission, full).
    """
    path = Path(path)
    if path.is_dir() and not folder:
        raise _refusal(errno.EISDIR, path)
    existing = path if path.is_dir() else next(p for p in path.parents if p.exists() or p == p.parent)
    if not existing.is_dir():
        raise _refusal(errno.ENOTDIR, path)
    probe = staging_path(existing / "write-probe")
    with storage_errors(path, staging=probe):
        probe.touch()
    remove_path(probe)


def _refusal(code: int, path: Path) -> StorageError:
    error = as_storage_error(OSError(code, os.strerror(code), str(path)))
    assert error is not None, code
    return error

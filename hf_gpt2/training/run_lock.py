"""One run at a time in a run folder: a lock file that the main process holds while the run writes there.

``<run>/.run.lock`` carries who holds it (process id, host, since when, the command) and an exclusive POSIX record
lock (``fcntl.lockf``) that the operating system drops when the holder exits, however it exits: a second run with
the same ``run.name`` is refused with the holder's name while the first lives, and a lock file left by a process
that was killed is taken over with a log line. Record locks work across the hosts of an NFS mount and are not passed
to forked workers. Only the main process of a multi-process run takes the lock; the other processes follow its
decisions.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hf_gpt2.errors import RunFolderError
from hf_gpt2.folders import missing_folders, remove_empty_folders, storage_errors

try:
    import fcntl
except ImportError:  # Windows: the holder's file alone says who runs
    fcntl = None

logger = logging.getLogger(__name__)

LOCK_FILE = ".run.lock"
"""The lock file in a run folder (hidden: it is no part of the run's results)."""

_HELD = errno.EACCES, errno.EAGAIN
"""``lockf`` errors that mean: another process holds the lock."""
_held_here: set[Path] = set()
"""Run folders locked by this process (record locks do not keep one process from locking twice)."""


@dataclass
class RunLock:
    """The lock on a run folder, held until :meth:`release`."""

    run_dir: Path
    fd: int | None
    created: list[Path] = field(default_factory=list)
    """Folders that taking the lock created (deepest first): removed on release when nothing else was written."""

    @property
    def path(self) -> Path:
        return self.run_dir / LOCK_FILE

    def release(self) -> None:
        """Remove the lock file and give the lock up; remove the run folder when the run wrote nothing there."""
        if self.fd is None:
            return
        fd, self.fd = self.fd, None
        try:
            if _same_file(fd, self.path):
                self.path.unlink()
        except OSError:
            pass
        finally:
            os.close(fd)
            _held_here.discard(self.run_dir.resolve())
        remove_empty_folders(self.created)  # a run that wrote something there keeps its folder


def lock_run_folder(run_dir: Path) -> RunLock:
    """Take the lock of ``run_dir`` (creating the folder); a lock left by a process that is gone is taken over.

    Raises:
        RunFolderError: another run holds it, naming its process id, host and start time.
        StorageError: the folder or its lock file cannot be written.
    """
    created = missing_folders(run_dir)
    with storage_errors(run_dir / LOCK_FILE):
        run_dir.mkdir(parents=True, exist_ok=True)
        key = run_dir.resolve()
        if key in _held_here:
            raise _in_use(run_dir, _holder())
        fd = _open_locked(run_dir)
        try:
            previous = _read_holder(fd)
            if previous:
                logger.warning("taking over the lock of %s: %s is gone", run_dir, _describe(previous))
            _write_holder(fd, _holder())
        except BaseException:
            os.close(fd)
            raise
    _held_here.add(key)
    return RunLock(run_dir, fd, created)


def _open_locked(run_dir: Path) -> int:
    """Open the lock file and lock it; the file must still be the one at its path once locked."""
    path = run_dir / LOCK_FILE
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        try:
            if not _try_lock(fd, run_dir):
                holder = _read_holder(fd)
                raise _in_use(run_dir, holder)
        except BaseException:
            os.close(fd)
            raise
        if _same_file(fd, path):
            return fd
        os.close(fd)  # its holder removed it while this process waited: lock the new one


def _try_lock(fd: int, run_dir: Path) -> bool:
    """Lock ``fd``; False when another process holds it. Without record locks, the holder's file decides."""
    if fcntl is not None:
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError as err:
            if err.errno in _HELD:
                return False
            if err.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                raise
            logger.warning("%s does not support file locks (%s); judging the lock by its holder's process id",
                           run_dir, os.strerror(err.errno))  # fmt: skip
    holder = _read_holder(fd)
    return not holder or (holder.get("host") == socket.gethostname() and not _pid_alive(holder.get("pid")))


def _pid_alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _holder() -> dict[str, Any]:
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "since": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "command": " ".join(os.path.basename(a) if i == 0 else a for i, a in enumerate(sys.argv))[:300],
    }


def _read_holder(fd: int) -> dict[str, Any]:
    try:
        data = os.pread(fd, 4096, 0)
        holder = json.loads(data.decode("utf-8")) if data.strip() else {}
    except (OSError, ValueError):
        return {"pid": "?", "host": "?", "since": "?"}
    return holder if isinstance(holder, dict) else {}


def _write_holder(fd: int, holder: dict[str, Any]) -> None:
    data = (json.dumps(holder) + "\n").encode("utf-8")
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)


def _describe(holder: dict[str, Any]) -> str:
    text = f"pid {holder.get('pid', '?')} on {holder.get('host', '?')} since {holder.get('since', '?')}"
    return f"{text}, running `{holder['command']}`" if holder.get("command") else text


def _in_use(run_dir: Path, holder: dict[str, Any]) -> RunFolderError:
    return RunFolderError(
        f"run folder {run_dir} is in use by another run: {_describe(holder)}; wait for it to end, "
        "or choose another run.name"
    )


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except OSError:
        return False

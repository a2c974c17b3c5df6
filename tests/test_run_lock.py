"""Two runs with the same ``run.name`` at once: the second is refused in one line that names the first (pid, host,
since when), and changes nothing; a lock left by a process that is gone is taken over with a log line; only the main
process of a multi-process run takes the lock.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from test_training_e2e import (  # the tiny run shared with the training tests
    REPO,
    accelerate_launch,
    error_of,
    run_env,
    train_cli,
    tree_digest,
    workspace,  # noqa: F401  (a fixture)
)

from hf_gpt2.errors import RunFolderError
from hf_gpt2.training.run_lock import LOCK_FILE, lock_run_folder

HOLDER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from hf_gpt2.training.run_lock import lock_run_folder
    lock = lock_run_folder(Path(sys.argv[1]))
    print("locked", flush=True)
    sys.stdin.readline()  # hold it until told
    lock.release()
    """
)


class Holder:
    """Another process that holds a run folder's lock until :meth:`stop` (or until it is killed)."""

    def __init__(self, run_dir: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(run_dir)],
            cwd=REPO, env=run_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert self.proc.stdout.readline().strip() == "locked"

    def stop(self) -> None:
        self.proc.communicate("\n", timeout=60)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=60)


@pytest.fixture
def holder():
    holders: list[Holder] = []

    def hold(run_dir: Path) -> Holder:
        holders.append(Holder(run_dir))
        return holders[-1]

    yield hold
    for h in holders:
        if h.proc.poll() is None:
            h.kill()


# -- the lock --------------------------------------------------------------------------------------------------------


def test_a_second_lock_is_refused_naming_the_holder_and_released_with_its_folder(tmp_path):
    run_dir = tmp_path / "runs" / "a"
    lock = lock_run_folder(run_dir)
    holder = json.loads((run_dir / LOCK_FILE).read_text())
    assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname() and holder["since"]
    with pytest.raises(RunFolderError, match=rf"in use by another run: pid {os.getpid()} on "):
        lock_run_folder(run_dir)
    lock.release()
    assert not (tmp_path / "runs").exists()  # nothing was written there: the folders it created are gone
    lock = lock_run_folder(run_dir)
    (run_dir / "recipe.yaml").write_text("written")
    lock.release()
    assert sorted(p.name for p in run_dir.iterdir()) == ["recipe.yaml"]


def test_another_process_holding_the_lock_is_named_and_a_killed_holder_is_taken_over(tmp_path, holder, caplog):
    run_dir = tmp_path / "run"
    other = holder(run_dir)
    with pytest.raises(RunFolderError) as refused:
        lock_run_folder(run_dir)
    message = str(refused.value)
    assert f"pid {other.proc.pid} on {socket.gethostname()} since " in message and "choose another run.name" in message
    other.kill()  # SIGKILL: its lock file stays, its record lock goes with it
    assert (run_dir / LOCK_FILE).is_file()
    caplog.set_level(logging.WARNING)
    lock = lock_run_folder(run_dir)
    assert f"taking over the lock of {run_dir}: pid {other.proc.pid}" in caplog.text and "is gone" in caplog.text
    assert json.loads((run_dir / LOCK_FILE).read_text())["pid"] == os.getpid()
    lock.release()
    assert run_dir.is_dir() and not list(run_dir.iterdir())  # its folder was there before: kept, without the lock


def test_a_holder_that_ends_releases_the_lock(tmp_path, holder):
    run_dir = tmp_path / "run"
    holder(run_dir).stop()
    assert not run_dir.exists()
    lock_run_folder(run_dir).release()


# -- the command line ------------------------------------------------------------------------------------------------


@pytest.fixture
def busy_run(workspace):  # noqa: F811
    """A run in progress (a recipe and a checkpoint folder), whose folder another process has locked."""
    run_dir = workspace / "runs" / "busy"
    (run_dir / "checkpoints/step-8").mkdir(parents=True, exist_ok=True)
    (run_dir / "checkpoints/step-8/train_state.json").write_text('{"step": 8}')
    (run_dir / "recipe.yaml").write_text("# the first run's recipe\n")
    return run_dir


SECOND_RUNS = {
    "a fresh run with the same name": ["run.name=busy"],
    "resume latest with the same name": ["run.name=busy", "train.resume_from=latest"],
    "resume the run folder by path": ["train.resume_from={run_dir}"],
    "resume latest without a name (the newest run)": ["train.resume_from=latest"],
}


@pytest.mark.parametrize("case", SECOND_RUNS)
def test_a_second_run_is_one_line_naming_the_first_and_changes_nothing(workspace, busy_run, holder, capsys, case):  # noqa: F811
    first = holder(busy_run)
    before = tree_digest(workspace)
    capsys.readouterr()
    assert train_cli(workspace, *(o.format(run_dir=busy_run) for o in SECOND_RUNS[case])) == 2
    err = error_of(capsys.readouterr().err)
    assert f"run folder {busy_run} is in use by another run: pid {first.proc.pid} on {socket.gethostname()}" in err
    assert tree_digest(workspace) == before
    first.stop()
    assert not (busy_run / LOCK_FILE).exists()


@pytest.mark.slow
@pytest.mark.multiprocess
def test_on_two_processes_only_the_main_takes_the_lock_and_a_stale_one_is_taken_over(workspace):  # noqa: F811
    run_dir = workspace / "runs" / "ddp-lock"
    run_dir.mkdir(parents=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = {"pid": dead.pid, "host": socket.gethostname(), "since": "earlier", "command": "killed"}
    (run_dir / LOCK_FILE).write_text(json.dumps(stale))
    done = accelerate_launch(
        "cpu_ddp.yaml", "train.py", str(workspace / "tiny.yaml"), "run.name=ddp-lock", "train.resume_from=latest",
        "train.grad_accum_steps=1",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stderr.count("taking over the lock") == 1 and "in use by another run" not in done.stderr
    assert "2 process(es)" in done.stderr
    assert (run_dir / "finished.json").is_file() and not (run_dir / LOCK_FILE).exists()

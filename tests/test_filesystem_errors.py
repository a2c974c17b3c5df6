"""File-system failures: a read-only folder, a path under a file, a full disk. Each is one line naming the path and
the error in words (exit 2, no traceback), leaves no temporary folder behind and changes nothing that existed; a run
stopped by a full disk continues where its last checkpoint left off once there is space again.

Tests here run as root, where chmod does not stop writes: a read-only or full disk is a small tmpfs where the
machine lets the tests mount one, and otherwise (and always, for the exact moment of a full disk) the writer is
patched to fail the way it does on a full disk (``OSError(ENOSPC)``, torch's short write, safetensors' "os error 28").
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_training_e2e import (  # the tiny run shared with the training tests
    REPO,
    error_of,
    finished_run,  # noqa: F401  (a fixture: the uninterrupted tiny run)
    run_env,
    train_cli,
    tree_digest,
    weights,
    workspace,  # noqa: F401  (a fixture)
)

from hf_gpt2 import cli, folders
from hf_gpt2.errors import StorageError
from hf_gpt2.folders import (
    as_storage_error,
    check_writable,
    remove_stale_staging,
    staged_folder,
    staging_path,
    write_text_atomically,
)


def staging_left(*roots: Path) -> list[Path]:
    """Temporary files and folders anywhere under the roots."""
    return [
        p
        for root in roots
        if root.exists()
        for p in root.rglob("*")
        if p.name.startswith((folders.STAGING_PREFIX, folders.UPLOAD_STAGING_PREFIX))
    ]


def dead_pid() -> int:
    """The id of a process that has exited."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.fixture
def tmpfs(tmp_path):
    """Mount a small tmpfs (``mount(size=..., read_only=...)``); skip where the machine does not allow it."""
    mounted: list[Path] = []

    def mount(size: str = "1m", *, read_only: bool = False) -> Path:
        target = tmp_path / f"disk{len(mounted)}"
        target.mkdir()
        options = f"size={size}" + (",ro" if read_only else "")
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)], capture_output=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({done.stderr.decode().strip() or done.returncode})")
        mounted.append(target)
        return target

    yield mount
    for target in mounted:
        subprocess.run(["umount", "-l", str(target)], capture_output=True)


# -- the message -----------------------------------------------------------------------------------------------------

ERRNOS = {
    errno.ENOSPC: "No space left on device",
    errno.EDQUOT: "quota",
    errno.EROFS: "Read-only file system",
    errno.EACCES: "Permission denied",
    errno.ENOTDIR: "Not a directory",
    errno.EISDIR: "Is a directory",
}


@pytest.mark.parametrize("code", ERRNOS)
def test_an_os_error_names_the_path_the_errno_in_words_and_a_fix(tmp_path, code):
    err = as_storage_error(OSError(code, os.strerror(code), str(tmp_path / "x")))
    assert isinstance(err, StorageError) and err.errno == code and err.path == str(tmp_path / "x")
    text = str(err)
    assert str(tmp_path / "x") in text and ERRNOS[code].lower() in text.lower()
    assert f"({errno.errorcode[code]})" in text and "\n" not in text
    assert text.split("; ", 1)[1]  # the fix


@pytest.mark.parametrize(
    "err",
    [
        RuntimeError("Error while serializing: I/O error: No space left on device (os error 28)"),  # safetensors
        RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534"),  # torch.save
        OSError("100000 requested and 8192 written"),  # numpy.tofile
    ],
    ids=["safetensors", "torch.save", "numpy"],
)
def test_a_full_disk_under_torch_safetensors_and_numpy_is_recognised(tmp_path, monkeypatch, err):
    monkeypatch.setattr(folders, "_free_bytes", lambda path: 0)
    storage = as_storage_error(err, tmp_path / "step-8")
    assert storage is not None and storage.errno == errno.ENOSPC and str(tmp_path / "step-8") in str(storage)


@pytest.mark.parametrize(
    "err",
    [OSError(errno.ECONNREFUSED, "Connection refused"), ValueError("bad"), OSError(errno.ENOENT, "gone", "/x")],
    ids=["network", "not an OSError", "missing file"],
)
def test_other_errors_are_not_file_system_errors(err):
    assert as_storage_error(err, Path("/x")) is None


def test_a_file_in_the_way_is_named_itself(tmp_path):
    (tmp_path / "runs").write_text("a file")
    err = as_storage_error(NotADirectoryError(errno.ENOTDIR, "Not a directory", str(tmp_path / "runs/a/b")))
    assert err.path == str(tmp_path / "runs")


# -- the staging helpers ---------------------------------------------------------------------------------------------


def test_a_full_disk_inside_a_staged_folder_names_the_destination_and_leaves_nothing(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out/kept.txt").write_text("old")
    before = tree_digest(tmp_path)
    with pytest.raises(StorageError) as caught:
        with staged_folder(tmp_path / "out") as stage:
            (stage.path / "half.bin").write_bytes(b"x" * 100)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(stage.path / "half.bin"))
    assert caught.value.path == str(tmp_path / "out") and "ENOSPC" in str(caught.value)
    assert tree_digest(tmp_path) == before and not staging_left(tmp_path)


def test_a_failed_text_write_keeps_the_old_file_and_leaves_no_temporary_file(tmp_path, monkeypatch):
    target = tmp_path / "eval.json"
    target.write_text("old")

    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # a write() on a full disk names no file

    monkeypatch.setattr(Path, "write_text", full)
    with pytest.raises(StorageError) as caught:
        write_text_atomically(target, "new")
    monkeypatch.undo()
    assert caught.value.path == str(target)
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["eval.json"]


def test_stale_staging_of_a_dead_process_is_swept_and_a_live_ones_is_kept(tmp_path):
    destination = tmp_path / "fingerprint"
    live = staging_path(destination)  # this process's own: alive
    live.mkdir()
    dead = Path(str(staging_path(destination)).replace(f"-{os.getpid()}-", f"-{dead_pid()}-"))
    (dead / "sub").mkdir(parents=True)
    (dead / "sub/shard.bin").write_bytes(b"x" * 1000)
    elsewhere = tmp_path / f".tmp-fingerprint.new-another-host-{dead_pid()}-abcdef"  # a shared disk: not judged
    elsewhere.mkdir()
    other = tmp_path / f".tmp-fingerprint-2.new-x-{dead_pid()}-abcdef"  # another destination's
    other.mkdir()
    assert remove_stale_staging(destination) == [dead]
    assert live.exists() and elsewhere.exists() and other.exists() and not dead.exists()
    with staged_folder(destination) as stage:  # the next writer sweeps too
        (stage.path / "meta.json").write_text("{}")
    assert (destination / "meta.json").is_file()


CHECK_WRITABLE = {
    "a folder where a file goes": (lambda root: root, {}, errno.EISDIR),
    "under a file": (lambda root: root / "afile" / "out.json", {}, errno.ENOTDIR),
    "a folder under a file": (lambda root: root / "afile" / "out", {"folder": True}, errno.ENOTDIR),
}


@pytest.mark.parametrize("case", CHECK_WRITABLE)
def test_check_writable_refuses_before_the_work_and_leaves_nothing(tmp_path, case):
    where, kwargs, code = CHECK_WRITABLE[case]
    (tmp_path / "afile").write_text("x")
    before = tree_digest(tmp_path)
    with pytest.raises(StorageError) as caught:
        check_writable(where(tmp_path), **kwargs)
    assert caught.value.errno == code
    assert tree_digest(tmp_path) == before and sorted(p.name for p in tmp_path.iterdir()) == ["afile"]
    check_writable(tmp_path / "new" / "out.json")
    assert not (tmp_path / "new").exists() and not staging_left(tmp_path)


def test_real_read_only_and_full_disks(tmpfs):
    read_only = tmpfs(read_only=True)
    with pytest.raises(StorageError, match=r"Read-only file system \(EROFS\)"):
        check_writable(read_only / "out.json")
    with pytest.raises(StorageError, match=r"Read-only file system \(EROFS\)") as caught:
        with staged_folder(read_only / "cache" / "fp"):
            pass
    assert caught.value.path == str(read_only / "cache")
    full = tmpfs("64k")
    with pytest.raises(StorageError, match=r"No space left on device \(ENOSPC\)") as caught:
        with staged_folder(full / "fp") as stage:
            (stage.path / "big.bin").write_bytes(os.urandom(200_000))
    assert caught.value.path == str(full / "fp") and not list(full.iterdir())
    with pytest.raises(StorageError, match="ENOSPC"):
        from safetensors.torch import save_file

        with staged_folder(full / "release") as stage:
            save_file({"w": torch.zeros(100_000)}, str(stage.path / "model.safetensors"))
    assert not list(full.iterdir())


# -- the command line ------------------------------------------------------------------------------------------------


def cli_error(argv: list[str], capsys) -> str:
    """Run `hf-gpt2 ARGV` in this process; assert exit 2 and one error line without a traceback; return it."""
    capsys.readouterr()
    assert cli.main(argv) == 2
    return error_of(capsys.readouterr().err)


TRAIN_REFUSALS = {  # (overrides with {root}, the path named)
    "run.output_dir under a file": (["run.output_dir={root}/afile/runs"], "{root}/afile"),
    "data.cache_dir is a file": (["data.cache_dir={root}/afile"], "{root}/afile"),
    "the tokenizer cache under a file": (
        ["tokenizer.train_new=true", "model.vocab_size=384", "data.cache_dir={root}/blocked"],
        "{root}/blocked/tokenizers",
    ),
}


@pytest.mark.parametrize("case", TRAIN_REFUSALS)
def test_train_into_a_path_under_a_file_is_one_line_and_changes_nothing(workspace, capsys, case):  # noqa: F811
    overrides, named = TRAIN_REFUSALS[case]
    (workspace / "afile").write_text("in the way")
    (workspace / "blocked").mkdir(exist_ok=True)
    (workspace / "blocked/tokenizers").write_text("in the way")
    before = tree_digest(workspace)
    capsys.readouterr()
    assert train_cli(workspace, "run.name=blocked", *(o.format(root=workspace) for o in overrides)) == 2
    err = error_of(capsys.readouterr().err)
    assert named.format(root=workspace) in err and ("ENOTDIR" in err or "EEXIST" in err), err
    assert tree_digest(workspace) == before and not (workspace / "runs/blocked").exists()
    assert not staging_left(workspace)


def test_train_onto_a_read_only_disk(workspace, capsys, tmpfs):  # noqa: F811
    read_only = tmpfs(read_only=True)
    for overrides in ([f"run.output_dir={read_only}/runs"], [f"data.cache_dir={read_only}/cache"]):
        capsys.readouterr()
        assert train_cli(workspace, "run.name=read-only", *overrides) == 2
        err = error_of(capsys.readouterr().err)
        assert str(read_only) in err and "Read-only file system (EROFS)" in err
    assert not (workspace / "runs/read-only").exists()


EVAL_AND_CONVERT = {
    "eval --output under a file": ["eval", "--model", "{root}/corpus", "--tasks", "val_loss", "--data",
                                   "val_loss={root}/tiny.yaml", "--output", "{root}/afile/out.json"],
    "eval --output is a folder": ["eval", "--model", "{root}/corpus", "--tasks", "val_loss", "--data",
                                  "val_loss={root}/tiny.yaml", "--output", "{root}/corpus"],
    "convert into a folder under a file": ["convert", "--to-gpt2", "{root}/corpus", "{root}/afile/out"],
}  # fmt: skip


@pytest.mark.parametrize("case", EVAL_AND_CONVERT)
def test_eval_and_convert_outputs_are_checked_before_the_model_loads(workspace, capsys, case):  # noqa: F811
    (workspace / "afile").write_text("in the way")
    before = tree_digest(workspace)
    err = cli_error([a.format(root=workspace) for a in EVAL_AND_CONVERT[case]], capsys)
    assert str(workspace) in err and ("ENOTDIR" in err or "EISDIR" in err), err
    assert tree_digest(workspace) == before and not staging_left(workspace)


UNREADABLE = {  # the file that cannot be read: (recipe overrides, the file, relative to the workspace)
    "the recipe": ([], "tiny.yaml"),
    "a data file": (["data.cache_dir={root}/fresh-cache"], "corpus/007.txt"),
}


@pytest.mark.parametrize("case", UNREADABLE)
def test_a_file_that_cannot_be_read_is_named(workspace, capsys, monkeypatch, case):  # noqa: F811
    overrides, name = UNREADABLE[case]
    victim = workspace / name

    def unreadable(real):
        def read(self, *args, **kwargs):
            if self == victim:  # as a file without read permission behaves for a user who is not root
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(self))
            return real(self, *args, **kwargs)

        return read

    before = tree_digest(workspace)
    monkeypatch.setattr(Path, "read_text", unreadable(Path.read_text))
    monkeypatch.setattr(Path, "read_bytes", unreadable(Path.read_bytes))
    capsys.readouterr()
    assert train_cli(workspace, "run.name=unreadable", *(o.format(root=workspace) for o in overrides)) == 2
    err = error_of(capsys.readouterr().err)
    assert f"{victim}: Permission denied (EACCES)" in err, err
    monkeypatch.undo()
    assert tree_digest(workspace) == before and not staging_left(workspace)
    assert not (workspace / "runs/unreadable").exists() and not (workspace / "fresh-cache").exists()


# -- a full disk in the middle of a run ------------------------------------------------------------------------------


def fail_like_a_full_disk(flavour: str) -> None:
    if flavour == "OSError":
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    if flavour == "torch.save":
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")
    raise RuntimeError("Error while serializing: I/O error: No space left on device (os error 28)")


@pytest.mark.slow
@pytest.mark.parametrize("flavour", ["OSError", "torch.save", "safetensors"])
def test_a_full_disk_during_a_checkpoint_then_a_resume_continues_exactly(
    workspace,  # noqa: F811
    finished_run,  # noqa: F811
    capsys,
    monkeypatch,
    flavour,
):
    from accelerate import Accelerator

    from hf_gpt2.training.checkpointing import verify_checkpoint

    run = workspace / "runs" / f"full-{flavour}"
    real_save = Accelerator.save_state

    def save_state(self, output_dir=None, **kwargs):
        if output_dir.endswith("step-8"):  # the second checkpoint: write part of it, then run out of space
            (Path(output_dir) / "model.safetensors").write_bytes(b"\0" * 4096)
            fail_like_a_full_disk(flavour)
        return real_save(self, output_dir, **kwargs)

    monkeypatch.setattr(Accelerator, "save_state", save_state)
    monkeypatch.setattr(folders, "_free_bytes", lambda path: 0)
    capsys.readouterr()
    assert train_cli(workspace, f"run.name={run.name}") == 2
    err = error_of(capsys.readouterr().err)
    assert str(run / "checkpoints/step-8") in err and "No space left on device (ENOSPC)" in err, err
    assert f"run.name={run.name} train.resume_from=latest" in err
    assert not staging_left(run) and not (run / ".run.lock").exists()
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["step-4"]
    assert verify_checkpoint(run / "checkpoints/step-4").step == 4
    monkeypatch.undo()  # space again
    assert train_cli(workspace, f"run.name={run.name}", "train.resume_from=latest") == 0
    a, b = weights(finished_run / "final"), weights(run / "final")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_full_disk_while_preparing_shards_leaves_the_cache_as_it_was(workspace, capsys, monkeypatch, tmp_path):  # noqa: F811
    from hf_gpt2.data import prepare

    cache = tmp_path / "cache"
    (cache / "kept").mkdir(parents=True)
    (cache / "kept/meta.json").write_text("{}")
    before = tree_digest(cache)
    calls = {"n": 0}
    real_write = prepare._ShardWriter.write

    def write(self, tokens, num_documents):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(self, tokens, num_documents)

    monkeypatch.setattr(prepare._ShardWriter, "write", write)
    capsys.readouterr()
    assert train_cli(workspace, "run.name=no-space", f"data.cache_dir={cache}") == 2
    err = error_of(capsys.readouterr().err)
    assert str(cache) in err and "ENOSPC" in err, err
    assert tree_digest(cache) == before and not staging_left(cache)
    assert not (workspace / "runs/no-space").exists()


# -- SIGKILL while preparing -----------------------------------------------------------------------------------------

KILL_WHILE_WRITING_SHARDS = """
import os, signal
import hf_gpt2.data.prepare as prepare
_write, _calls = prepare._ShardWriter.write, []
def write(self, tokens, num_documents):
    _calls.append(self.split)
    if len(_calls) == 2:  # the train shards are written, the val shard not: the staging folder holds half a cache
        os.kill(os.getpid(), signal.SIGKILL)
    return _write(self, tokens, num_documents)
prepare._ShardWriter.write = write
"""


@pytest.mark.slow
def test_a_prepare_killed_midway_leaves_staging_that_the_next_start_removes(workspace, tmp_path):  # noqa: F811
    cache = tmp_path / "cache"
    command = [f"data.cache_dir={cache}", "data.shard_tokens=1000"]
    code = f"{KILL_WHILE_WRITING_SHARDS}\nimport sys\nfrom hf_gpt2 import cli\nsys.exit(cli.main(sys.argv[1:]))"
    killed = subprocess.run(
        [sys.executable, "-c", code, "prepare", str(workspace / "tiny.yaml"), *command],
        cwd=REPO, env=run_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert killed.returncode == -9, killed.stderr
    left = staging_left(cache)
    assert len(left) == 1 and list(left[0].glob("*.bin")), left
    assert cli.main(["prepare", str(workspace / "tiny.yaml"), *command]) == 0  # the next start, here
    assert not staging_left(cache) and len(list(cache.glob("*/meta.json"))) == 1
    shutil.rmtree(cache)

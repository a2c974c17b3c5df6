"""A failure after training never strands the run.

What can be checked before training is (the eval tasks' Hub data, the push's token and namespace, the stock
export): such a run is refused at once, one line and exit 2, with nothing written. What fails after training (an
evaluation, the export, the push, a full disk, SIGTERM) leaves the last step's checkpoint and no ``finished.json``;
the same command with ``train.resume_from=latest`` then writes the release again and completes it without training.
"""

from __future__ import annotations

import errno
import logging
import os
import signal

import pytest
import torch
from test_filesystem_errors import staging_left
from test_hub import SECRET, FakeApi, FakeHub
from test_training_e2e import (  # the tiny run shared with the training tests
    error_of,
    finished_run,  # noqa: F401  (a fixture: the uninterrupted tiny run)
    train_cli,
    tree_digest,
    weights,
    workspace,  # noqa: F401  (a fixture)
)

from hf_gpt2 import online as hf_online
from hf_gpt2.errors import ConversionError
from hf_gpt2.hub import common as hub_common
from hf_gpt2.training.checkpointing import verify_checkpoint

ACCOUNT = {"name": "me", "orgs": [{"name": "my-org"}], "auth": {"accessToken": {"displayName": "ci", "role": "write"}}}


class AccountHub(FakeHub):
    """The in-memory Hub of the Hub tests, which also answers ``whoami`` for the token."""

    def __init__(self, account: dict | None = None, whoami_error: Exception | None = None) -> None:
        super().__init__()
        self.account, self.whoami_error = account or ACCOUNT, whoami_error

    def api(self, token: object = None) -> FakeApi:
        self.tokens.append(token)
        return AccountApi(self)


class AccountApi(FakeApi):
    def whoami(self, token=None, *, cache=False):
        self.hub.calls.append(("whoami",))
        if self.hub.whoami_error is not None:
            raise self.hub.whoami_error
        return self.hub.account


@pytest.fixture
def online(monkeypatch):
    """The Hub as reachable (an in-memory one behind ``make_api``), with a token."""
    import huggingface_hub.constants

    def use(hub: FakeHub) -> FakeHub:
        monkeypatch.setattr(hub_common, "make_api", hub.api)
        monkeypatch.setattr(hf_online, "require_hub_reachable", lambda purpose, alternative=None: None)
        monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setenv("HF_TOKEN", SECRET)
        return hub

    return use


def no_token(monkeypatch, tmp_path):
    import huggingface_hub.constants

    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))


# -- refused before training -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def prepared(workspace):  # noqa: F811
    """The tiny recipe's token shards, prepared once."""
    from hf_gpt2 import cli

    assert cli.main(["prepare", str(workspace / "tiny.yaml")]) == 0


def _http_401():
    from huggingface_hub.errors import HfHubHTTPError
    from test_hub import _http_error

    return _http_error(HfHubHTTPError, 401, "401 Client Error: Invalid user token.")


def _refuse_export(monkeypatch):
    import hf_gpt2.release as release

    def to_gpt2(model):
        raise ConversionError("hf_gpt2 → GPT-2: tensor 'x' has no counterpart")

    monkeypatch.setattr(release, "to_gpt2", to_gpt2)


BEFORE_TRAINING = {  # overrides, setup(monkeypatch, tmp_path, online), words of the message
    "an eval task on the Hub while offline": (["eval.tasks=[lambada_openai]"], None, "eval.data.lambada_openai=PATH"),
    "push_final without a token": (["hub.push_final=true", "hub.repo_id=me/tiny"], "no-token", "HF_TOKEN"),
    "push_final while offline": (["hub.push_final=true", "hub.repo_id=me/tiny"], "offline", "HF_HUB_OFFLINE=1"),
    "a read-only token": (["hub.push_final=true", "hub.repo_id=me/tiny"], "read-only", "is read-only"),
    "a namespace that is not yours": (["hub.push_final=true", "hub.repo_id=someone/tiny"], "online", "'someone'"),
    "an invalid token": (["hub.push_checkpoints=true", "hub.repo_id=me/tiny"], "invalid", "invalid or expired"),
    "the Hub unreachable": (["hub.push_final=true", "hub.repo_id=me/tiny"], "unreachable", "could not reach the"),
    "an export that cannot work": ([], "export", "has no counterpart"),
}


@pytest.mark.parametrize("case", BEFORE_TRAINING)
def test_what_would_fail_after_training_is_refused_before_it(
    workspace,  # noqa: F811
    prepared,  # the data cache exists: a refusal after the data step must leave it as it was
    capsys,
    monkeypatch,
    tmp_path,
    online,
    case,
):
    overrides, setup, words = BEFORE_TRAINING[case]
    hub = None
    if setup == "no-token":
        no_token(monkeypatch, tmp_path)
    elif setup == "offline":
        monkeypatch.setenv("HF_TOKEN", SECRET)
    elif setup == "read-only":
        hub = online(AccountHub({**ACCOUNT, "auth": {"accessToken": {"role": "read"}}}))
    elif setup == "online":
        hub = online(AccountHub())
    elif setup == "invalid":
        hub = online(AccountHub(whoami_error=_http_401()))
    elif setup == "unreachable":
        hub = online(AccountHub(whoami_error=ConnectionError("[Errno -2] Name or service not known")))
    elif setup == "export":
        _refuse_export(monkeypatch)
    before = tree_digest(workspace)
    capsys.readouterr()
    assert train_cli(workspace, "run.name=refused", *overrides) == 2
    err = error_of(capsys.readouterr().err)
    assert words in err, err
    assert SECRET not in err
    assert tree_digest(workspace) == before and not (workspace / "runs/refused").exists()
    if hub is not None:
        assert [call[0] for call in hub.calls] == ["whoami"]  # asked, and nothing changed on the Hub


def test_push_access_is_granted_for_your_namespaces(online):
    from hf_gpt2.hub import check_hub_access

    hub = online(AccountHub())
    assert check_hub_access("me/tiny") == SECRET
    assert check_hub_access("my-org/tiny") == SECRET
    assert [call[0] for call in hub.calls] == ["whoami", "whoami"]


# -- failed after training, finished by resuming ---------------------------------------------------------------------


def _fail_once(monkeypatch, module, name, error):
    real = getattr(module, name)
    calls = []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise error
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, failing)


AFTER_TRAINING = {  # what fails, words of the message
    "an eval task's data": "has no meta.json",
    "the stock export": "cannot export",
    "the push": "nothing was committed",
    "a full disk while final/ is written": "No space left on device (ENOSPC)",
}


@pytest.mark.slow
@pytest.mark.parametrize("case", AFTER_TRAINING)
def test_a_failure_after_training_is_finished_by_resuming_without_training(
    workspace,  # noqa: F811
    finished_run,  # noqa: F811
    capsys,
    caplog,
    monkeypatch,
    online,
    case,
):
    import hf_gpt2.pipeline as pipeline
    import hf_gpt2.release as release

    run = workspace / "runs" / f"late-{case.split()[-1].strip('/')}"
    overrides, fixed = [f"run.name={run.name}"], []
    hub = None
    if case == "an eval task's data":
        overrides += ["eval.tasks=[val_loss]", f"eval.data.val_loss={workspace / 'corpus'}"]  # a folder without shards
        shards = next(p.parent for p in (workspace / "cache").glob("*/meta.json"))
        fixed = ["eval.tasks=[val_loss]", f"eval.data.val_loss={shards}"]
    elif case == "the stock export":
        _fail_once(monkeypatch, pipeline, "save_stock_gpt2_export", ConversionError("cannot export: a test"))
    elif case == "the push":
        hub = online(AccountHub())
        hub.fail_commits = 1
        overrides += ["hub.push_final=true", "hub.repo_id=me/tiny"]
    else:
        _fail_once(monkeypatch, release, "write_stock_generation_config", OSError(errno.ENOSPC, "No space left"))
    capsys.readouterr()
    assert train_cli(workspace, *overrides) == 2
    err = error_of(capsys.readouterr().err)
    assert AFTER_TRAINING[case] in err, err
    assert not (run / "finished.json").exists() and not staging_left(run) and not (run / ".run.lock").exists()
    assert verify_checkpoint(run / "checkpoints/step-8").step == 8  # the last step is saved
    checkpoints = tree_digest(run / "checkpoints")
    began_release = (run / "final").exists()
    (run / "checkpoints/.tmp-step-9").mkdir()  # as a killed run leaves them
    (run / ".tmp-final.new-host-1-abcdef").mkdir()

    caplog.clear()
    caplog.set_level(logging.INFO)
    resume = [*overrides[: 1 if fixed else None], *fixed, "train.resume_from=latest"]
    assert train_cli(workspace, *resume) == 0
    assert ("its release is not complete" in caplog.text) == began_release
    assert "resumed from" in caplog.text and "at step 8" in caplog.text
    assert "step 8 | loss" not in caplog.text  # not trained again
    assert tree_digest(run / "checkpoints") == checkpoints  # no step trained or saved again
    assert (run / "finished.json").is_file() and not staging_left(run)
    assert {"README.md", "eval.json", "model.safetensors"} <= {p.name for p in (run / "final").iterdir()}
    assert (run / "final-gpt2/model.safetensors").is_file() and (run / "eval.json").is_file()
    a, b = weights(finished_run / "final"), weights(run / "final")
    assert all(torch.equal(a[k], b[k]) for k in a)
    if hub is not None:
        assert "model.safetensors" in hub.repos["me/tiny"]["main"]
    capsys.readouterr()
    assert train_cli(workspace, *resume) == 2  # and now it is finished
    assert "is finished" in error_of(capsys.readouterr().err)


@pytest.mark.slow
def test_a_run_that_reached_its_target_is_finished_by_resuming_without_training(
    workspace,  # noqa: F811
    prepared,
    capsys,
    caplog,
    monkeypatch,
):
    import hf_gpt2.pipeline as pipeline

    run = workspace / "runs" / "target-then-failed"
    overrides = [f"run.name={run.name}", "train.target_val_bpb=1000", "train.eval_every=2", "train.save_every=0"]
    _fail_once(monkeypatch, pipeline, "save_stock_gpt2_export", ConversionError("cannot export: a test"))
    caplog.set_level(logging.INFO)
    assert train_cli(workspace, *overrides) == 2
    assert "reached train.target_val_bpb=1000" in caplog.text
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["step-2"]  # stopped at the first evaluation
    assert verify_checkpoint(run / "checkpoints/step-2").target_reached
    checkpoints = tree_digest(run / "checkpoints")
    caplog.clear()
    assert train_cli(workspace, *overrides, "train.resume_from=latest") == 0
    assert "at step 2 (train.target_val_bpb was reached there: no more training)" in caplog.text
    assert "step 3 | loss" not in caplog.text and tree_digest(run / "checkpoints") == checkpoints  # not trained
    assert (run / "finished.json").is_file() and (run / "final-gpt2/model.safetensors").is_file()


# -- SIGTERM while the release is written ----------------------------------------------------------------------------

MOMENTS = {  # where SIGTERM arrives: the module and function it arrives in
    "while final/ is written": ("release", "write_stock_generation_config"),
    "while sampling": ("pipeline", "log_samples"),
}


class SigtermReachedTheTest(Exception):
    """SIGTERM got past the run: nothing in it handled the signal."""


@pytest.mark.slow
@pytest.mark.parametrize("moment", MOMENTS)
def test_sigterm_while_the_release_is_written_exits_cleanly_and_resuming_finishes_it(
    workspace,  # noqa: F811
    monkeypatch,
    caplog,
    moment,
):
    import importlib

    module_name, function = MOMENTS[moment]
    module = importlib.import_module(f"hf_gpt2.{module_name}")
    real = getattr(module, function)

    def preempted(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)  # as a scheduler does; delivered before the next line runs
        return real(*args, **kwargs)

    def unhandled(signum, frame):
        raise SigtermReachedTheTest

    monkeypatch.setattr(module, function, preempted)
    previous = signal.signal(signal.SIGTERM, unhandled)  # the run must put its own handler in front of this one
    try:
        name = f"sigterm-{function}"
        caplog.set_level(logging.WARNING)
        assert train_cli(workspace, f"run.name={name}") == 0
    finally:
        signal.signal(signal.SIGTERM, previous)
    monkeypatch.undo()
    assert "SIGTERM while the release" in caplog.text
    run = workspace / "runs" / name
    assert not (run / "finished.json").exists() and not staging_left(run) and not (run / ".run.lock").exists()
    assert train_cli(workspace, f"run.name={name}", "train.resume_from=latest") == 0
    assert (run / "finished.json").is_file() and (run / "final/README.md").is_file()

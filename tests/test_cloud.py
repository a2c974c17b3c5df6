"""Remote runs: rendered SkyPilot tasks, the run script's accelerate wiring, and launch/status/logs/down at the
orchestrator boundary (a recording fake of `sky`). No network, no cloud account, no GPU.

SkyPilot cannot be installed in hf-gpt2's environment (skypilot pins click<8.2, huggingface_hub needs click>=8.4.2),
so the tests that run SkyPilot's own parser use a separate SkyPilot environment when one is found (`sky` on PATH,
$HF_GPT2_SKY or $HF_GPT2_SKY_PYTHON) and are skipped otherwise.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from hf_gpt2 import cli
from hf_gpt2.cloud import launcher, orchestrator, remote
from hf_gpt2.cloud.errors import CloudError
from hf_gpt2.cloud.orchestrator import SkyResult
from hf_gpt2.cloud.task import (
    RUN_SCRIPT,
    GpuSpec,
    LaunchPlan,
    parse_gpus,
    render_task,
    render_template,
    task_to_yaml,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
TOKEN = "hf_test_secret_value_123"
TINY_RECIPE = "train:\n  max_steps: 10\n  micro_batch_size: 2\n"


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A checkout-shaped folder as the cwd, an empty HOME, no Hugging Face token and no `sky` anywhere."""
    root = tmp_path / "repo"
    (root / "accelerate_configs").mkdir(parents=True)
    (root / "recipes").mkdir()
    (root / "Makefile").write_text("install:\n")
    (root / "train.py").write_text("")
    (root / "recipes" / "tiny.yaml").write_text(TINY_RECIPE)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.chdir(root)
    monkeypatch.setenv("HOME", str(home))
    for var in ("HF_TOKEN", "HF_OIDC_RESOURCE", orchestrator.SKY_ENV_VAR, orchestrator.SKY_PYTHON_ENV_VAR):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.delenv(launcher.RECORDS_ENV_VAR, raising=False)
    monkeypatch.setattr("huggingface_hub.constants.HF_TOKEN_PATH", str(home / "no-token"))
    monkeypatch.setenv("PATH", os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if not _has_sky(p)))
    return root


@pytest.fixture
def sky_calls(project, monkeypatch):
    """Replace the orchestrator boundary with a recording fake; returns the list of recorded calls."""
    calls: list[dict] = []
    outcome = {"result": SkyResult(0, "")}

    def fake_run_sky(args, *, cwd=None, env=None):
        calls.append({"args": list(args), "cwd": cwd, "env": dict(env or {})})
        return outcome["result"]

    def fake_run_tool(argv):
        calls.append({"tool": list(argv)})
        return 0

    monkeypatch.setattr(orchestrator, "find_sky", lambda: ["sky"])
    monkeypatch.setattr(orchestrator, "find_sky_python", lambda: None)
    monkeypatch.setattr(orchestrator, "run_sky", fake_run_sky)
    monkeypatch.setattr(orchestrator, "run_tool", fake_run_tool)
    return SimpleNamespace(calls=calls, outcome=outcome)  # tests script failures through outcome["result"]


def _has_sky(folder: str) -> bool:
    return bool(folder) and (Path(folder) / "sky").exists()


def _lambda_keys(home: Path) -> None:
    (home / ".lambda_cloud").mkdir()
    (home / ".lambda_cloud" / "lambda_keys").write_text("api_key = secret_lambda_key\n")


def _cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(["cloud", *argv])
    out, err = capsys.readouterr()
    return code, out, err


# --- rendering -----------------------------------------------------------------------------------------------------


def test_dry_run_prints_the_task_and_changes_nothing(project, capsys, caplog):
    caplog.set_level(logging.INFO)
    code, out, err = _cli(
        capsys,
        "launch",
        "recipes/tiny.yaml",
        "--gpus",
        "h100:8",  # case-insensitive, written back in SkyPilot's spelling
        "hub.repo_id=me/tiny",
        "--name",
        "tiny-run",  # options may come between the overrides
        "sample.prompts=[Hello there]",
        "--dry-run",
    )
    assert code == 0, err
    task = yaml.safe_load(out)
    assert task["name"] == "tiny-run" and task["workdir"] == "." and task["num_nodes"] == 1
    assert task["resources"] == {"accelerators": "H100:8"}
    assert task["envs"]["RECIPE"] == "recipes/tiny.yaml" and task["envs"]["RUN_NAME"] == "tiny-run"
    assert task["envs"]["OVERRIDES"] == "hub.repo_id=me/tiny 'sample.prompts=[Hello there]' hub.push_checkpoints=true"
    assert task["envs"]["RESUME_FROM"] == "hub:me/tiny@checkpoints"
    assert task["secrets"] == {"HF_TOKEN": None}  # a required secret: the value is given at launch, never here
    assert "make install" in task["setup"] and "accelerate launch" in task["run"]
    assert "not checked by its parser" in caplog.text and "a real launch needs HF_TOKEN" in caplog.text
    assert not (Path.home() / ".cache").exists()  # no launch record


def test_dry_run_without_hub_repo_warns_and_needs_no_token(project, capsys, caplog):
    code, out, err = _cli(capsys, "launch", "recipes/tiny.yaml", "--gpus", "A100-80GB:1", "--dry-run")
    assert code == 0, err
    task = yaml.safe_load(out)
    assert "secrets" not in task and task["envs"]["RESUME_FROM"] == "" and task["envs"]["OVERRIDES"] == ""
    assert "hub.repo_id is not set" in caplog.text
    assert task["name"].startswith("tiny-")


def test_a_multi_node_launch_says_where_checkpoints_go_and_warns_about_local_resumes(project, capsys, caplog):
    caplog.set_level(logging.INFO)
    code, out, err = _cli(capsys, "launch", "recipes/tiny.yaml", "--nodes", "2", "hub.repo_id=me/tiny", "--dry-run")
    assert code == 0, err
    assert yaml.safe_load(out)["num_nodes"] == 2
    assert "completed on the head node" in caplog.text and "resumes every node from the Hub" in caplog.text
    assert "on the head node only" not in caplog.text
    caplog.clear()
    code, _, err = _cli(capsys, "launch", "recipes/tiny.yaml", "--nodes", "2", "train.resume_from=latest", "--dry-run")
    assert code == 0, err
    assert "train.resume_from=latest: a local checkpoint is on the head node only" in caplog.text


def test_recipe_outside_the_workdir_travels_as_a_file_mount(project, tmp_path, capsys):
    outside = tmp_path / "mine.yaml"
    outside.write_text(TINY_RECIPE)
    code, out, err = _cli(capsys, "launch", str(outside), "--name", "mine", "--dry-run")
    assert code == 0, err
    task = yaml.safe_load(out)
    assert task["envs"]["RECIPE"] == f"{launcher.MOUNTED_RECIPES}/mine.yaml"
    assert task["file_mounts"] == {f"{launcher.MOUNTED_RECIPES}/mine.yaml": str(outside)}


def test_template_file_is_the_rendered_task():
    template = REPO_ROOT / "cloud" / "train.sky.yaml"
    assert template.read_text() == render_template(), (
        "regenerate with: .venv/bin/python -c 'from hf_gpt2.cloud.task import write_template; write_template()'"
    )


def test_rendered_tasks_parse_with_skypilots_own_parser(tmp_path, monkeypatch):
    python = orchestrator.find_sky_python()
    if python is None:
        pytest.skip("SkyPilot is not installed in its own environment here (uv tool install 'skypilot[lambda]')")
    (tmp_path / "corpus.txt").write_text("text")
    multi_node = LaunchPlan(
        name="gpt2-2x8",
        recipe="recipes/full.yaml",
        overrides=["hub.repo_id=me/gpt2", "hub.push_checkpoints=true"],
        resume_from="hub:me/gpt2@checkpoints",
        gpus=GpuSpec("H100", 8),
        nodes=2,
        infra="lambda/us-east-1",
        file_mounts={"/data/corpus.txt": str(tmp_path / "corpus.txt")},
        needs_token=True,
    )
    monkeypatch.setenv(orchestrator.SKY_PYTHON_ENV_VAR, python)
    monkeypatch.setenv("HOME", str(tmp_path))  # SkyPilot writes its state under ~/.sky
    answer = orchestrator.validate_task(render_template(), cwd=REPO_ROOT)  # one node, H100:8, the HF_TOKEN secret
    if not answer["validated"]:
        pytest.skip(f"{python} cannot import sky")
    assert answer == {"validated": True, "error": None, "gpu_known": None, "gpu_candidates": []}
    assert orchestrator.validate_task(task_to_yaml(render_task(multi_node)), cwd=REPO_ROOT)["validated"]
    broken = task_to_yaml({**render_task(multi_node), "num_nodes": "two"})
    with pytest.raises(CloudError, match="SkyPilot rejected the rendered task.*num_nodes"):
        orchestrator.validate_task(broken, cwd=REPO_ROOT)


# --- the run script on the cluster ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("nodes", "gpus", "rank", "expected"),
    [
        (1, 1, 0, ["--config_file", "accelerate_configs/single_gpu.yaml"]),
        (1, 8, 0, ["--config_file", "accelerate_configs/multi_gpu.yaml", "--num_processes", "8"]),
        (
            2,
            8,
            1,
            [
                "--config_file", "accelerate_configs/multi_node.yaml", "--num_machines", "2", "--machine_rank", "1",
                "--main_process_ip", "10.0.0.1", "--main_process_port", "29500", "--num_processes", "16",
            ],
        ),
    ],
)  # fmt: skip
def test_run_script_picks_the_accelerate_config_from_skypilot_variables(tmp_path, nodes, gpus, rank, expected):
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("bash is needed to run the task's run script")
    workdir, bin_dir = tmp_path / "sky_workdir", tmp_path / "bin"
    (workdir / ".venv" / "bin").mkdir(parents=True)
    (workdir / ".venv" / "bin" / "activate").write_text("")
    bin_dir.mkdir()
    argv_file = tmp_path / "argv.json"
    _script(bin_dir / "accelerate", f'import json, sys; json.dump(sys.argv[1:], open("{argv_file}", "w"))')
    # `python -m hf_gpt2.cloud.remote resume-arg ...` says a checkpoint was pushed.
    resume_argv = tmp_path / "resume_argv.json"
    _script(
        bin_dir / "python",
        f'import json, sys; json.dump(sys.argv[1:], open("{resume_argv}", "w")); '
        'print("train.resume_from=hub:me/gpt2@checkpoints")',
    )
    env = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "RECIPE": "recipes/full.yaml",
        "RUN_NAME": "gpt2",
        "OVERRIDES": "hub.repo_id=me/gpt2 'sample.prompts=[Hello there]'",
        "RESUME_FROM": "hub:me/gpt2@checkpoints",
        "SKYPILOT_NUM_NODES": str(nodes),
        "SKYPILOT_NUM_GPUS_PER_NODE": str(gpus),
        "SKYPILOT_NODE_RANK": str(rank),
        "SKYPILOT_NODE_IPS": "10.0.0.1\n10.0.0.2" if nodes > 1 else "10.0.0.1",
    }
    subprocess.run([bash, "-c", RUN_SCRIPT], cwd=workdir, env=env, check=True, timeout=30)
    overrides = ["hub.repo_id=me/gpt2", "sample.prompts=[Hello there]", "run.name=gpt2"]
    assert json.loads(resume_argv.read_text()) == [
        "-m", "hf_gpt2.cloud.remote", "resume-arg", "--spec", "hub:me/gpt2@checkpoints", "--nodes", str(nodes),
        "--", "recipes/full.yaml", *overrides,
    ]  # fmt: skip
    argv = json.loads(argv_file.read_text())
    assert argv[0] == "launch"
    assert argv[1 : 1 + len(expected)] == expected
    assert argv[1 + len(expected) :] == [
        "train.py",
        "recipes/full.yaml",
        "hub.repo_id=me/gpt2",
        "sample.prompts=[Hello there]",
        "run.name=gpt2",
        "train.resume_from=hub:me/gpt2@checkpoints",
    ]


def _script(path: Path, body: str) -> None:
    path.write_text(f"#!{sys.executable}\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


def _hub_error(cls):
    import httpx2

    return cls("404 Client Error", response=httpx2.Response(404, request=httpx2.Request("GET", "https://hub.invalid")))


class _FakeHubApi:
    def __init__(self, files=None, error=None):
        self.files, self.error = files or [], error

    def list_repo_files(self, repo_id, revision=None):
        if self.error is not None:
            raise self.error
        return self.files


def _pushed(monkeypatch, files=None, error=None):
    monkeypatch.setattr("hf_gpt2.hub.common.make_api", lambda *a, **k: _FakeHubApi(files=files, error=error))


def _local_checkpoint(run_dir: Path, step: int) -> None:
    (run_dir / "checkpoints" / f"step-{step}").mkdir(parents=True)


SPEC = "hub:me/gpt2@checkpoints"
FROM_HUB = f"train.resume_from={SPEC}"


def test_resume_from_the_hub_only_when_a_checkpoint_was_pushed(monkeypatch, tmp_path):
    from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

    run_dir = tmp_path / "runs" / "gpt2"
    _pushed(monkeypatch, files=["checkpoints/step-1000/model.safetensors", "README.md"])
    assert remote.resume_arg(SPEC, run_dir) == FROM_HUB
    _pushed(monkeypatch, files=["README.md"])
    assert remote.resume_arg(SPEC, run_dir) == ""
    _pushed(monkeypatch, error=_hub_error(RepositoryNotFoundError))  # first launch: the repo does not exist yet
    assert remote.resume_arg(SPEC, run_dir) == ""
    _pushed(monkeypatch, error=_hub_error(RevisionNotFoundError))
    assert remote.resume_arg(SPEC, run_dir) == ""
    assert remote.resume_arg("", None) == ""
    _pushed(monkeypatch, error=OSError("network down"))
    with pytest.raises(OSError):  # never restart from step 0 over pushed checkpoints because the Hub was unreachable
        remote.resume_arg(SPEC, run_dir)


def test_resume_on_a_kept_cluster_prefers_the_newest_checkpoint(monkeypatch, tmp_path):
    run_dir = tmp_path / "runs" / "gpt2"
    _local_checkpoint(run_dir, 2000)
    _pushed(monkeypatch, files=["checkpoints/step-1000/train_state.json"])
    assert remote.resume_arg(SPEC, run_dir) == "train.resume_from=latest"  # local step 2000 is newer
    assert remote.resume_arg(SPEC, run_dir, nodes=2) == FROM_HUB  # every node must choose alike: the Hub decides
    assert not run_dir.exists() and len(list(run_dir.parent.glob("gpt2.before-*"))) == 1  # moved aside, not lost

    _local_checkpoint(run_dir, 1000)
    _pushed(monkeypatch, files=["checkpoints/step-3000/train_state.json"])
    assert remote.resume_arg(SPEC, run_dir) == FROM_HUB  # pushed from a newer cluster: the local folder moves aside
    assert not run_dir.exists()

    (run_dir / "tb").mkdir(parents=True)  # crashed before its first checkpoint, nothing pushed
    _pushed(monkeypatch, files=[])
    assert remote.resume_arg(SPEC, run_dir) == "train.resume_from=latest"  # continues the named run from step 0


def test_resume_arg_command_reads_the_recipe(monkeypatch, tmp_path, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny.yaml").write_text(TINY_RECIPE)
    _pushed(monkeypatch, files=["checkpoints/step-5/train_state.json"])
    assert remote.main(["resume-arg", "--spec", SPEC, "--", "tiny.yaml", "run.name=gpt2"]) == 0
    assert capsys.readouterr().out == FROM_HUB + "\n"
    assert remote.main(["resume-arg", "--spec", SPEC, "--", "tiny.yaml", "run.name=gpt2", "train.resume_from=x"]) == 0
    assert capsys.readouterr().out == ""  # the user's own train.resume_from wins


# --- launch, status, logs, down at the orchestrator boundary -------------------------------------------------------


def test_launch_then_status_logs_down(project, sky_calls, capsys, monkeypatch):
    _lambda_keys(Path.home())
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    argv = [
        "launch",
        "recipes/tiny.yaml",
        "--gpus",
        "H100:8",
        "--infra",
        "lambda",
        "--name",
        "gpt2-a",
        "hub.repo_id=me/a",
    ]
    code, out, err = _cli(capsys, *argv)
    assert code == 0, err
    (launch,) = sky_calls.calls
    task_file = Path.home() / ".cache" / "hf_gpt2" / "cloud" / "gpt2-a.sky.yaml"
    assert launch["args"] == ["launch", "-c", "gpt2-a", str(task_file), "-y", "--down", "--secret", "HF_TOKEN"]
    assert launch["env"] == {"HF_TOKEN": TOKEN} and Path(launch["cwd"]) == project
    task = yaml.safe_load(task_file.read_text())
    assert task["resources"] == {"accelerators": "H100:8", "infra": "lambda"}
    assert TOKEN not in task_file.read_text() and TOKEN not in out + err

    for argv in (["status"], ["logs"], ["logs", "--follow"], ["down"]):
        assert _cli(capsys, *argv)[0] == 0
    assert [c["args"] for c in sky_calls.calls[1:]] == [
        ["status", "gpt2-a"],
        ["logs", "gpt2-a", "--no-follow"],
        ["logs", "gpt2-a", "--follow"],
        ["down", "gpt2-a", "-y"],
    ]
    code, _, err = _cli(capsys, "logs")  # the record went with the cluster
    assert code == 2 and "no launch recorded" in err


def test_keep_and_managed_launches(project, sky_calls, capsys, caplog):
    code, _, err = _cli(capsys, "launch", "recipes/tiny.yaml", "--gpus", "A10:1", "--name", "kept", "--keep")
    assert code == 0, err
    assert sky_calls.calls[-1]["args"][:3] == ["launch", "-c", "kept"] and sky_calls.calls[-1]["args"][-1] == "-y"
    assert "cloud down kept" in caplog.text  # no --down: the cluster stays, and the user is told how to stop paying

    code, _, err = _cli(capsys, "launch", "recipes/tiny.yaml", "--name", "job", "--managed", "--detach")
    assert code == 0, err
    assert sky_calls.calls[-1]["args"][:3] == ["jobs", "launch", "-n"] and sky_calls.calls[-1]["args"][-1] == "--async"
    for argv in (["status", "job"], ["logs", "job"], ["down", "job"]):
        assert _cli(capsys, *argv)[0] == 0
    assert [c["args"] for c in sky_calls.calls[-3:]] == [
        ["jobs", "queue"],
        ["jobs", "logs", "-n", "job", "--no-follow"],
        ["jobs", "cancel", "-n", "job", "-y"],
    ]


def test_tensorboard_and_sync_go_through_skypilots_ssh_names(project, sky_calls, capsys):
    assert _cli(capsys, "launch", "recipes/tiny.yaml", "--name", "tb", "--keep", "run.output_dir=out")[0] == 0
    assert _cli(capsys, "tensorboard", "--port", "7007")[0] == 0
    assert _cli(capsys, "sync", "--no-checkpoints")[0] == 0
    ssh, rsync = sky_calls.calls[-2]["tool"], sky_calls.calls[-1]["tool"]
    assert ssh[:4] == ["ssh", "-L", "7007:localhost:6006", "tb"]
    assert "tensorboard --logdir sky_workdir/out/tb/tb" in ssh[4]
    assert rsync == ["rsync", "-Pavz", "--exclude", "checkpoints/", "tb:sky_workdir/out/tb/", "runs/tb/"]
    assert (project / "runs" / "tb").is_dir()


def test_tensorboard_of_a_managed_job_is_refused(project, sky_calls, capsys):
    assert _cli(capsys, "launch", "recipes/tiny.yaml", "--name", "mj", "--managed")[0] == 0
    code, _, err = _cli(capsys, "tensorboard")
    assert code == 2 and "managed job" in err and len(err.strip().splitlines()) == 1


# --- error paths: one line on stderr, exit 2, nothing launched -----------------------------------------------------


def test_missing_lambda_credentials_say_how_to_create_them(project, sky_calls, capsys):
    code, _, err = _cli(capsys, "launch", "recipes/tiny.yaml", "--infra", "lambda")
    assert code == 2 and not sky_calls.calls
    assert "lambda_keys is missing" in err and "api_key = <KEY>" in err and "sky check lambda" in err
    assert len(err.strip().splitlines()) == 1


def test_no_capacity_is_one_clear_line(project, sky_calls, capsys):
    sky_calls.outcome["result"] = SkyResult(
        1, "sky.exceptions.ResourcesUnavailableError: Failed to provision all possible launchable resources.\n"
    )
    code, _, err = _cli(capsys, "launch", "recipes/tiny.yaml", "--gpus", "H100:8")
    assert code == 2
    (line,) = [x for x in err.splitlines() if x.startswith("hf-gpt2 cloud: error:")]
    assert "no capacity for H100:8" in line and "--managed" in line


def test_unknown_gpu_type_suggests_the_close_one(project, sky_calls, capsys):
    code, _, err = _cli(capsys, "launch", "recipes/tiny.yaml", "--gpus", "H1000:8", "--dry-run")
    assert code == 2 and "unknown GPU type 'H1000': did you mean H100" in err
    code, _, err = _cli(capsys, "launch", "recipes/tiny.yaml", "--gpus", "A100-80G:8")
    assert code == 2 and "did you mean A100-80GB" in err and not sky_calls.calls
    assert parse_gpus("a100-80gb:4") == GpuSpec("A100-80GB", 4)
    code, _, err = _cli(capsys, "launch", "recipes/tiny.yaml", "--infra", "lamda", "--dry-run")
    assert code == 2 and "did you mean lambda" in err


def test_missing_hf_token_when_the_recipe_pushes(project, sky_calls, capsys):
    code, _, err = _cli(capsys, "launch", "recipes/tiny.yaml", "hub.repo_id=me/tiny")
    assert code == 2 and not sky_calls.calls
    assert "hub.repo_id=me/tiny" in err and "export HF_TOKEN" in err


def test_recipe_mistakes_fail_before_anything_is_launched(project, sky_calls, capsys):
    code, _, err = _cli(capsys, "launch", "recipes/tiny.yaml", "train.max_step=3")
    assert code == 2 and "did you mean train.max_steps" in err and not sky_calls.calls


def test_without_skypilot_cloud_says_how_to_install_it(project, capsys):
    code, out, err = _cli(capsys, "status")
    assert code == 2 and out == ""
    (line,) = err.strip().splitlines()
    assert "uv tool install 'skypilot[lambda]" in line and "pipx install" in line


def test_a_fake_sky_command_sees_the_secret_only_in_its_environment(project, tmp_path, monkeypatch, capsys):
    """End to end through run_sky: a `sky` executable that records what it got and fails like SkyPilot does."""
    record = tmp_path / "sky_call.json"
    fake = tmp_path / "fake-bin" / "sky"
    fake.parent.mkdir()
    fake.write_text(
        "#!/bin/sh\n"
        f"printf '%s\\n' \"$@\" > {record}\n"
        f'[ "$HF_TOKEN" = "{TOKEN}" ] && echo token-ok >> {record}\n'
        "echo 'sky.exceptions.ResourcesUnavailableError: Failed to provision all possible launchable resources.'\n"
        "exit 1\n"
    )
    fake.chmod(0o755)
    monkeypatch.setenv(orchestrator.SKY_ENV_VAR, str(fake))
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    code, out, err = _cli(capsys, "launch", "recipes/tiny.yaml", "--name", "e2e", "hub.repo_id=me/e2e")
    assert code == 2 and "no capacity for H100:8" in err
    assert "ResourcesUnavailableError" in out  # SkyPilot's own output is shown as it comes
    lines = record.read_text().split()
    assert lines[:2] == ["launch", "-c"] and lines[-1] == "token-ok" and TOKEN not in lines


@pytest.mark.parametrize(
    ("tail", "expected"),
    [
        ("sky.exceptions.ResourcesUnavailableError: Failed to provision", "no capacity for H100:8"),
        ("sky.exceptions.NoCloudAccessError: No cloud access is available", "run `sky check`"),
        ("sky.exceptions.ClusterDoesNotExist: Cluster 'x' does not exist.", "cluster 'x' does not exist"),
        ("HTTPConnectionPool(host='127.0.0.1', port=46580): [Errno 111] Connection refused", "sky api start"),
        ("ConnectionError: Max retries exceeded (NameResolutionError)", "could not reach the network"),
        ("something else", "`sky launch` failed with exit status 1"),
    ],
)
def test_failures_are_explained_in_one_line(tail, expected):
    message = launcher.explain(["launch", "-c", "x"], SkyResult(1, tail), "x", "H100:8")
    assert expected in message and "\n" not in message

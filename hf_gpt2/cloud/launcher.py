"""Launch a recipe on remote GPUs and look after the run: status, logs, TensorBoard, sync, teardown.

Every call to SkyPilot (and to ssh/rsync) goes through :mod:`hf_gpt2.cloud.orchestrator`. Each launch leaves a
small record (``~/.cache/hf_gpt2/cloud/NAME.json`` plus the rendered ``NAME.sky.yaml``) so that the other
subcommands know the cluster, whether it is a managed job and where its run folder is, with no name given.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath

from hf_gpt2.cloud import orchestrator
from hf_gpt2.cloud.credentials import check_lambda_credentials, hf_token, require_hf_token
from hf_gpt2.cloud.errors import CloudError
from hf_gpt2.cloud.task import (
    KNOWN_GPUS,
    SECRET_NAME,
    LaunchPlan,
    default_name,
    is_known_gpu,
    parse_gpus,
    render_task,
    task_to_yaml,
    unknown_gpu_message,
    validate_infra,
    validate_name,
)
from hf_gpt2.folders import write_text_atomically
from hf_gpt2.recipe import load_recipe

logger = logging.getLogger(__name__)

RECORDS_ENV_VAR = "HF_GPT2_CLOUD_DIR"
REMOTE_WORKDIR = "sky_workdir"  # where SkyPilot syncs the workdir, relative to the remote home
REMOTE_TENSORBOARD_PORT = 6006
MOUNTED_RECIPES = "/tmp/hf_gpt2_recipes"


@dataclass(kw_only=True, slots=True)
class LaunchOptions:
    """What `hf-gpt2 cloud launch` was asked for, besides the recipe and its overrides."""

    gpus: str = "H100:8"
    nodes: int = 1
    infra: str | None = None
    name: str | None = None
    keep: bool = False
    """Keep the cluster when the run ends (default: SkyPilot tears it down, `sky launch --down`)."""
    managed: bool = False
    """Launch as a managed job (`sky jobs launch`): SkyPilot relaunches it after a preemption or failure."""
    detach: bool = False
    """Return once the job is submitted instead of streaming its logs."""
    mounts: list[str] = field(default_factory=list)
    """``REMOTE=LOCAL`` file mounts, copied to every node before setup."""


@dataclass(kw_only=True, slots=True)
class LaunchRecord:
    """What the other subcommands need to know about one launch."""

    name: str
    managed: bool
    run_dir: str
    """The run folder on the head node, relative to the remote home (or absolute)."""
    task_file: str
    created: float = field(default_factory=time.time)


def find_project_root(start: Path | None = None) -> Path:
    """The repository root (holds Makefile, train.py and accelerate_configs/) at or above ``start``."""
    start = (start or Path.cwd()).resolve()
    for folder in (start, *start.parents):
        if all((folder / marker).exists() for marker in ("Makefile", "train.py", "accelerate_configs")):
            return folder
    raise CloudError(
        f"no hf_gpt2 checkout at or above {start}: run `hf-gpt2 cloud launch` from the repository root "
        "(its files are synced to the cluster as the workdir)"
    )


def plan_launch(recipe_path: str, overrides: list[str], options: LaunchOptions, project_root: Path) -> LaunchPlan:
    """Load the recipe with its overrides (so mistakes fail here, not on a paid GPU) and resolve the launch."""
    recipe = load_recipe(recipe_path, overrides)
    user_overrides = [o for o in overrides if not o.startswith("run.name=")]
    name = validate_name(options.name or recipe.run.name or default_name(recipe_path, time.strftime("%y%m%d%H")))
    if options.nodes < 1:
        raise CloudError(f"--nodes must be >= 1, got {options.nodes}")
    if options.nodes > 1:
        _explain_multi_node(recipe.train.resume_from)
    if options.managed and options.keep:
        logger.warning("--keep has no effect on a managed job: SkyPilot releases its cluster when the job ends")
    repo_id = recipe.hub.repo_id
    resume_from = ""
    if repo_id:
        if not recipe.hub.push_checkpoints:
            user_overrides.append("hub.push_checkpoints=true")
        if recipe.train.resume_from is None:
            resume_from = f"hub:{repo_id}@{recipe.hub.checkpoint_revision}"
    else:
        logger.warning(
            "hub.repo_id is not set: checkpoints stay on the cluster and are lost when it goes down; "
            "add hub.repo_id=USER/NAME to push them and to resume after a preemption"
        )
    recipe_remote, mounts = _recipe_on_cluster(Path(recipe_path), project_root)
    mounts.update(_parse_mounts(options.mounts))
    return LaunchPlan(
        name=name,
        recipe=recipe_remote,
        overrides=user_overrides,
        resume_from=resume_from,
        gpus=parse_gpus(options.gpus),
        nodes=options.nodes,
        infra=validate_infra(options.infra),
        file_mounts=mounts,
        needs_token=bool(repo_id),
        hub_repo_id=repo_id,
        output_dir=recipe.run.output_dir,
    )


def _explain_multi_node(resume_from: str | None) -> None:
    """SkyPilot's nodes share no filesystem: say where checkpoints go and which resumes work."""
    logger.info(
        "multi-node: each checkpoint is completed on the head node (the other nodes send it their processes' RNG "
        "states and data positions) and pushed from there; a relaunch resumes every node from the Hub"
    )
    if resume_from is not None and not resume_from.startswith("hub:"):
        logger.warning(
            "train.resume_from=%s: a local checkpoint is on the head node only (the nodes share no filesystem) and "
            "the other nodes stop with an error; resume from the Hub with train.resume_from=hub:USER/NAME, or put "
            "run.output_dir on storage that every node mounts",
            resume_from,
        )


def render_checked(plan: LaunchPlan, project_root: Path) -> tuple[str, bool]:
    """Render the task, validate it with SkyPilot's parser where installed and check the GPU type.

    Returns (task YAML, whether SkyPilot's parser validated it).
    """
    task_yaml = task_to_yaml(render_task(plan))
    gpu = plan.gpus.name
    answer = orchestrator.validate_task(
        task_yaml, cwd=project_root, gpu=None if is_known_gpu(gpu) else gpu, infra=plan.infra
    )
    if not is_known_gpu(gpu) and not answer.get("gpu_known"):
        raise CloudError(unknown_gpu_message(gpu, answer.get("gpu_candidates") or KNOWN_GPUS))
    return task_yaml, answer["validated"]


def dry_run(plan: LaunchPlan, project_root: Path) -> str:
    """The rendered task, validated where SkyPilot is installed; changes nothing."""
    task_yaml, validated = render_checked(plan, project_root)
    if not validated:
        logger.info("SkyPilot is not installed here: the task was rendered but not checked by its parser")
    if plan.needs_token and not hf_token():
        logger.warning("no Hugging Face token found: a real launch needs HF_TOKEN (the recipe pushes to the Hub)")
    return task_yaml


def launch(plan: LaunchPlan, options: LaunchOptions, project_root: Path) -> LaunchRecord:
    """Check credentials, start the run with SkyPilot and record it. Streams SkyPilot's output unless detached."""
    orchestrator.find_sky()
    task_yaml, _ = render_checked(plan, project_root)
    if plan.infra and plan.infra.split("/")[0].lower() == "lambda":
        check_lambda_credentials()
    env = {SECRET_NAME: require_hf_token(plan.hub_repo_id or "the recipe's hub.repo_id")} if plan.needs_token else {}
    record = _save_record(plan, options, task_yaml)
    args = _launch_args(plan, options, record.task_file)
    result = orchestrator.run_sky(args, cwd=project_root, env=env)
    if result.returncode != 0:
        raise CloudError(explain(args, result, plan.name, str(plan.gpus)))
    if options.keep and not options.managed:
        logger.warning("cluster %s is kept: `hf-gpt2 cloud down %s` stops paying for it", plan.name, plan.name)
    return record


def status(name: str | None) -> None:
    """Show the cluster (or managed job) of ``name``; every cluster when no name is given and none was launched."""
    record = load_record(name, required=False)
    if record and record.managed:
        args = ["jobs", "queue"]
    else:
        args = ["status", *([record.name] if record else [name] if name else [])]
    _check(args, orchestrator.run_sky(args), name)


def logs(name: str | None, *, follow: bool) -> None:
    """Print the run's logs; with ``follow``, keep printing until the job ends."""
    record = _require_record(name)
    follow_flag = "--follow" if follow else "--no-follow"
    args = ["jobs", "logs", "-n", record.name, follow_flag] if record.managed else ["logs", record.name, follow_flag]
    _check(args, orchestrator.run_sky(args), record.name)


def down(name: str | None) -> None:
    """Tear the cluster down (a managed job is cancelled, which releases its cluster)."""
    record = _require_record(name)
    args = ["jobs", "cancel", "-n", record.name, "-y"] if record.managed else ["down", record.name, "-y"]
    _check(args, orchestrator.run_sky(args), record.name)
    _record_path(record.name).unlink(missing_ok=True)


def tensorboard(name: str | None, *, port: int) -> int:
    """Serve TensorBoard on the head node and forward it to ``localhost:port`` (ssh -L) until interrupted."""
    record = _require_reachable(name, "tensorboard")
    remote = (
        f"cd ~ && {REMOTE_WORKDIR}/.venv/bin/tensorboard --logdir {shlex.quote(record.run_dir + '/tb')} "
        f"--host 127.0.0.1 --port {REMOTE_TENSORBOARD_PORT}"
    )
    logger.info("TensorBoard of %s at http://localhost:%d (Ctrl-C to stop)", record.name, port)
    return orchestrator.run_tool(["ssh", "-L", f"{port}:localhost:{REMOTE_TENSORBOARD_PORT}", record.name, remote])


def sync(name: str | None, *, dest: Path | None, checkpoints: bool) -> Path:
    """Pull the run folder from the head node with rsync; returns the local folder."""
    record = _require_reachable(name, "sync")
    dest = dest or Path("runs") / PurePosixPath(record.run_dir).name
    dest.mkdir(parents=True, exist_ok=True)
    excludes = [] if checkpoints else ["--exclude", "checkpoints/"]
    argv = ["rsync", "-Pavz", *excludes, f"{record.name}:{record.run_dir}/", f"{dest}/"]
    code = orchestrator.run_tool(argv)
    if code != 0:
        raise CloudError(f"rsync from {record.name} failed (exit status {code}); is it up? `hf-gpt2 cloud status`")
    return dest


def explain(args: list[str], result: orchestrator.SkyResult, name: str | None, gpus: str | None = None) -> str:
    """The one-line error for a failed `sky` call."""
    action = " ".join(args[:2]) if args[0] == "jobs" else args[0]
    return orchestrator.explain_failure(action, result, cluster=name, gpus=gpus)


def records_dir() -> Path:
    """Where launch records live: ``$HF_GPT2_CLOUD_DIR`` or ``~/.cache/hf_gpt2/cloud``."""
    return Path(os.environ.get(RECORDS_ENV_VAR) or Path.home() / ".cache" / "hf_gpt2" / "cloud")


def load_record(name: str | None, *, required: bool = True) -> LaunchRecord | None:
    """The record of ``name``, or of the latest launch when ``name`` is None."""
    if name is not None:
        path = _record_path(name)
        if path.is_file():
            return LaunchRecord(**json.loads(path.read_text()))
        # A cluster launched by hand (sky launch): assume the template's layout.
        return LaunchRecord(name=name, managed=False, run_dir=f"{REMOTE_WORKDIR}/runs/{name}", task_file="")
    records = sorted(records_dir().glob("*.json"), key=lambda p: p.stat().st_mtime) if records_dir().is_dir() else []
    if records:
        return LaunchRecord(**json.loads(records[-1].read_text()))
    if required:
        raise CloudError("no launch recorded on this machine: pass a cluster name (`hf-gpt2 cloud status` lists all)")
    return None


def _launch_args(plan: LaunchPlan, options: LaunchOptions, task_file: str) -> list[str]:
    if options.managed:
        args = ["jobs", "launch", "-n", plan.name, task_file, "-y"]
    else:
        args = ["launch", "-c", plan.name, task_file, "-y", *([] if options.keep else ["--down"])]
    if options.detach:
        args.append("--async" if options.managed else "--detach-run")
    if plan.needs_token:
        args += ["--secret", SECRET_NAME]  # the value comes from the child's environment, never the command line
    return args


def _save_record(plan: LaunchPlan, options: LaunchOptions, task_yaml: str) -> LaunchRecord:
    folder = records_dir()
    folder.mkdir(parents=True, exist_ok=True)
    task_file = folder / f"{plan.name}.sky.yaml"
    write_text_atomically(task_file, task_yaml)
    run_dir = str(PurePosixPath(plan.output_dir) / plan.name)
    if not PurePosixPath(plan.output_dir).is_absolute():
        run_dir = f"{REMOTE_WORKDIR}/{run_dir}"
    record = LaunchRecord(name=plan.name, managed=options.managed, run_dir=run_dir, task_file=str(task_file))
    write_text_atomically(_record_path(plan.name), json.dumps(asdict(record), indent=2) + "\n")
    return record


def _recipe_on_cluster(recipe: Path, project_root: Path) -> tuple[str, dict[str, str]]:
    """The recipe's path on the cluster, and a file mount when it lies outside the synced workdir."""
    resolved = recipe.resolve()
    if resolved.is_relative_to(project_root):
        return resolved.relative_to(project_root).as_posix(), {}
    remote = f"{MOUNTED_RECIPES}/{resolved.name}"
    return remote, {remote: str(resolved)}


def _parse_mounts(mounts: list[str]) -> dict[str, str]:
    parsed = {}
    for mount in mounts:
        remote, sep, local = mount.partition("=")
        if not sep or not remote or not local:
            raise CloudError(f"--mount {mount!r}: use REMOTE=LOCAL, e.g. --mount /data/corpus.txt=./corpus.txt")
        if not Path(local).expanduser().exists():
            raise CloudError(f"--mount {mount!r}: local path {local!r} does not exist")
        parsed[remote] = str(Path(local).expanduser().resolve())
    return parsed


def _record_path(name: str) -> Path:
    return records_dir() / f"{name}.json"


def _require_record(name: str | None) -> LaunchRecord:
    record = load_record(name, required=True)
    assert record is not None
    return record


def _require_reachable(name: str | None, what: str) -> LaunchRecord:
    record = _require_record(name)
    if record.managed:
        raise CloudError(
            f"{record.name} is a managed job: its cluster is not reachable by name, so `{what}` cannot reach it; "
            "its checkpoints and final model are on the Hub (hub.repo_id), its logs in `hf-gpt2 cloud logs`"
        )
    return record


def _check(args: list[str], result: orchestrator.SkyResult, name: str | None) -> None:
    if result.returncode != 0:
        raise CloudError(explain(args, result, name))

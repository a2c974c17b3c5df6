"""The thin adapter between hf_gpt2 and SkyPilot: every call to SkyPilot goes through :func:`run_sky`.

SkyPilot is driven through its `sky` command, installed in its own environment (``uv tool install
'skypilot[lambda]'`` or ``pipx install 'skypilot[lambda]'``): it cannot share hf-gpt2's environment, because skypilot
pins ``click<8.2`` and huggingface_hub needs ``click>=8.4.2``. Task validation runs SkyPilot's own parser
(``sky.Task.from_yaml_config``) with the interpreter of that environment (see ``_validate_in_sky.py``).
"""

from __future__ import annotations

import collections
import json
import logging
import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from hf_gpt2.cloud.errors import CloudError

logger = logging.getLogger(__name__)

INSTALL_HINT = (
    "SkyPilot's `sky` command was not found: install it in its own environment with "
    "`uv tool install 'skypilot[lambda]>=0.14.1'` (or `pipx install 'skypilot[lambda]>=0.14.1'`), then run "
    "`sky check lambda` (it cannot share hf-gpt2's environment: skypilot pins click<8.2)"
)
SKY_ENV_VAR = "HF_GPT2_SKY"
"""Override for the `sky` command (a path, or a command line such as ``uvx --from skypilot[lambda] sky``)."""
SKY_PYTHON_ENV_VAR = "HF_GPT2_SKY_PYTHON"
"""Override for the Python interpreter that can ``import sky`` (used to validate tasks)."""
_VALIDATOR = Path(__file__).with_name("_validate_in_sky.py")
_TAIL_LINES = 60


@dataclass(frozen=True, slots=True)
class SkyResult:
    """Exit status and the last lines of output of one `sky` command."""

    returncode: int
    tail: str


def find_sky() -> list[str]:
    """The `sky` command as an argv prefix; raises CloudError with the install line when there is none."""
    explicit = os.environ.get(SKY_ENV_VAR)
    if explicit:
        return shlex.split(explicit)
    found = shutil.which("sky")
    if found is None:
        raise CloudError(INSTALL_HINT)
    return [found]


def find_sky_python() -> str | None:
    """The interpreter of SkyPilot's environment (from the `sky` script's shebang), or None when unknown."""
    explicit = os.environ.get(SKY_PYTHON_ENV_VAR)
    if explicit:
        return explicit
    try:
        sky = find_sky()
    except CloudError:
        return None
    if len(sky) != 1:
        return None
    return _script_interpreter(Path(sky[0]))


def run_sky(args: list[str], *, cwd: str | Path | None = None, env: dict[str, str] | None = None) -> SkyResult:
    """Run ``sky ARGS``, echo its output as it comes, and return the exit status with the output's tail.

    ``env`` adds variables to this process's environment for the child only (HF_TOKEN for ``--secret HF_TOKEN``,
    which SkyPilot reads from the environment so that the value never appears on a command line).
    """
    argv = find_sky() + args
    logger.info("running: %s", shlex.join(argv))
    child_env = {**os.environ, **(env or {})}
    tail: collections.deque[str] = collections.deque(maxlen=_TAIL_LINES)
    with subprocess.Popen(
        argv, cwd=cwd, env=child_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            tail.append(line)
    return SkyResult(proc.returncode, "".join(tail))


def validate_task(task_yaml: str, *, cwd: str | Path, gpu: str | None = None, infra: str | None = None) -> dict:
    """Parse ``task_yaml`` with SkyPilot's own parser; check an unknown ``gpu`` against its catalog when reachable.

    Returns ``{"validated": bool, "gpu_known": bool | None, "gpu_candidates": [...]}``; ``validated`` is False when
    no SkyPilot environment was found. Raises CloudError with SkyPilot's message when the task does not parse.
    """
    python = find_sky_python()
    if python is None:
        return {"validated": False, "gpu_known": None, "gpu_candidates": []}
    request = json.dumps({"task_yaml": task_yaml, "gpu": gpu, "infra": infra})
    proc = subprocess.run(
        [python, str(_VALIDATOR)], input=request, capture_output=True, text=True, cwd=cwd, timeout=300, check=False
    )
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        # `sky launch` parses the task again, so a broken validator only loses the early check.
        reason = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        logger.warning("could not run SkyPilot's task parser with %s (%s); the task is not validated", python, reason)
        return {"validated": False, "gpu_known": None, "gpu_candidates": []}
    answer = json.loads(lines[-1])
    if answer.get("error"):
        raise CloudError(f"SkyPilot rejected the rendered task: {answer['error']}")
    return {"validated": True, **answer}


def explain_failure(action: str, result: SkyResult, *, cluster: str | None = None, gpus: str | None = None) -> str:
    """One line that says why ``sky ACTION`` failed and what to do, from the tail of its output."""
    tail = result.tail
    if "ResourcesUnavailableError" in tail or "Failed to provision all possible launchable resources" in tail:
        what = f" for {gpus}" if gpus else ""
        return (
            f"no capacity{what} right now: retry later, add `--infra lambda/<region>` for another region, or pick "
            "another GPU type (`sky show-gpus`); a managed job (`--managed`) keeps retrying for you"
        )
    if "NoCloudAccessError" in tail or "No cloud is enabled" in tail or "No cloud access" in tail:
        return "SkyPilot has no usable cloud credentials: run `sky check` and follow what it says"
    if "ClusterDoesNotExist" in tail or "does not exist" in tail or "ClusterNotUpError" in tail:
        name = f" {cluster!r}" if cluster else ""
        return f"cluster{name} does not exist or is not up (`hf-gpt2 cloud status` lists what is running)"
    if "127.0.0.1" in tail and "Connection refused" in tail:
        return "SkyPilot's local API server did not answer: run `sky api start` (or retry), then the same command"
    if "NameResolutionError" in tail or "Max retries exceeded" in tail or "ConnectionError" in tail:
        return "SkyPilot could not reach the network (its GPU catalog and the cloud API are online); check it"
    return f"`sky {action}` failed with exit status {result.returncode}; its output is above"


def _script_interpreter(script: Path) -> str | None:
    """The interpreter named by a console script's shebang (also pip's ``/bin/sh`` trampoline for long paths)."""
    try:
        head = script.read_text(errors="replace").splitlines()[:3]
    except OSError:
        return None
    if not head or not head[0].startswith("#!"):
        return None
    first = head[0][2:].strip()
    if first.endswith("/sh") and len(head) > 1 and head[1].startswith("'''exec' "):
        first = head[1].split("'''exec' ", 1)[1].split(' "$0"', 1)[0].strip()
    interpreter = shlex.split(first)[0] if first else ""
    if not Path(interpreter).name.startswith("python") or not Path(interpreter).exists():
        return None
    return interpreter


def run_tool(argv: list[str]) -> int:
    """Run a local tool that talks to the cluster through SkyPilot's ssh config (ssh, rsync); returns its status."""
    if shutil.which(argv[0]) is None:
        raise CloudError(f"`{argv[0]}` is not installed here; it is needed to reach the cluster")
    logger.info("running: %s", shlex.join(argv))
    try:
        return subprocess.run(argv, check=False).returncode
    except KeyboardInterrupt:
        return 130

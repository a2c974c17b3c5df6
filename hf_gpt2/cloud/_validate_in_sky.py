"""Validate a task with SkyPilot's own parser. Runs under SkyPilot's interpreter, so it imports no hf_gpt2 code.

Reads ``{"task_yaml": str, "gpu": str | None, "infra": str | None}`` as JSON on stdin and writes one JSON line:
``{"error": str | None, "gpu_known": bool | None, "gpu_candidates": [str]}``. ``gpu_known`` is None when the
catalog cannot be reached (SkyPilot fetches it from the network).
"""

from __future__ import annotations

import contextlib
import io
import json
import sys

import yaml


def main() -> int:
    request = json.load(sys.stdin)
    answer = {"error": None, "gpu_known": None, "gpu_candidates": []}
    with contextlib.redirect_stdout(io.StringIO()):
        import sky  # optional: only SkyPilot's interpreter has it; its import prints, so stdout is redirected

        try:
            config = yaml.safe_load(request["task_yaml"])
            secrets = [(key, "<redacted>") for key in (config.get("secrets") or {})]
            sky.Task.from_yaml_config(config, secrets_overrides=secrets)
        except Exception as err:  # SkyPilot raises several types; all of them mean "this task is invalid"
            answer["error"] = f"{type(err).__name__}: {err}".splitlines()[0]
        if request.get("gpu") and answer["error"] is None:
            answer.update(_catalog_lookup(sky, request["gpu"], request.get("infra")))
    sys.stdout.write(json.dumps(answer) + "\n")
    return 0


def _catalog_lookup(sky, gpu: str, infra: str | None) -> dict:
    cloud = infra.split("/")[0] if infra else None
    try:
        offered = sky.catalog.list_accelerators(gpus_only=True, clouds=cloud, case_sensitive=False)
    except Exception:  # offline, or a catalog that cannot be fetched: the caller falls back to its own list
        return {}
    names = sorted(offered)
    return {"gpu_known": any(name.upper() == gpu.upper() for name in names), "gpu_candidates": names}


if __name__ == "__main__":
    raise SystemExit(main())

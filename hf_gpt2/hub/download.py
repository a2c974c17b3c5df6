"""Resuming from the Hub: ``train.resume_from="hub:USER/NAME[@REV]"`` → the newest pushed checkpoint, on disk."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import httpx2
from huggingface_hub.errors import (
    HfHubHTTPError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from hf_gpt2 import online
from hf_gpt2.errors import CheckpointError
from hf_gpt2.hub import common
from hf_gpt2.hub.common import DEFAULT_CHECKPOINT_REVISION, describe_hub_error
from hf_gpt2.locations import REPO_ID

logger = logging.getLogger(__name__)

_STEP_FILE = re.compile(r"^checkpoints/step-(\d+)/")


def parse_hub_spec(spec: str) -> tuple[str, str]:
    """Split ``hub:USER/NAME[@REV]`` into (repo id, revision); the revision defaults to ``checkpoints``.

    Raises:
        CheckpointError: the spec does not have that form.
    """
    body = spec[len("hub:") :] if spec.startswith("hub:") else None
    repo_id, _, revision = (body or "").partition("@")
    if body is None or not REPO_ID.fullmatch(repo_id) or (not revision and "@" in body):
        raise CheckpointError(
            f"train.resume_from={spec!r} is not a Hub checkpoint; use hub:USER/NAME or hub:USER/NAME@BRANCH"
        )
    return repo_id, revision or DEFAULT_CHECKPOINT_REVISION


def latest_pushed_step(files: list[str]) -> int | None:
    """The largest N among ``checkpoints/step-N/...`` paths, or None."""
    steps = [int(m.group(1)) for f in files if (m := _STEP_FILE.match(f))]
    return max(steps) if steps else None


def download_checkpoint(spec: str, *, cache_dir: str | os.PathLike | None = None, token: str | None = None) -> Path:
    """Download the newest ``checkpoints/step-N/`` of a Hub revision and return its local folder.

    The files land in the huggingface_hub cache (or ``cache_dir``), so a second resume from the same step downloads
    nothing. With ``HF_HUB_OFFLINE=1`` the newest step already in the cache is used.

    Args:
        spec: ``hub:USER/NAME`` (branch ``checkpoints``) or ``hub:USER/NAME@REV`` (a branch, tag or commit).
        cache_dir: where to cache the files (default: the huggingface_hub cache).
        token: for private repos; default: ``hf auth login`` / HF_TOKEN when present.

    Raises:
        CheckpointError: the repo or revision does not exist (or is not visible to your token), it holds no
            checkpoint, or the download failed (a network failure says what to set).
        HubError: the Hub cannot be reached (with ``HF_HUB_OFFLINE=1`` the cache is read instead).
    """
    repo_id, revision = parse_hub_spec(spec)
    api = common.make_api(token)
    online.require_hub_reachable(f"download {spec}")
    try:
        step = latest_pushed_step(api.list_repo_files(repo_id, revision=revision))
        if step is None:
            raise CheckpointError(
                f"{repo_id}@{revision} holds no checkpoints/step-N/ folder; push checkpoints with "
                "hub.push_checkpoints=true, or name the branch that has them (hub:USER/NAME@BRANCH)"
            )
        snapshot = api.snapshot_download(
            repo_id, revision=revision, allow_patterns=[f"checkpoints/step-{step}/*"], cache_dir=cache_dir
        )
    except OfflineModeIsEnabled:
        return _cached_checkpoint(api, repo_id, revision, cache_dir)
    except RepositoryNotFoundError as err:
        raise CheckpointError(
            f"Hub repo {repo_id} not found (or private and your token cannot see it): {describe_hub_error(err)}"
        ) from err
    except RevisionNotFoundError as err:
        raise CheckpointError(f"{repo_id} has no revision {revision!r}: {describe_hub_error(err)}") from err
    except (HfHubHTTPError, httpx2.HTTPError, OSError) as err:
        network = online.network_problem(err, f"download {spec}")
        raise CheckpointError(network or f"downloading {spec} failed: {describe_hub_error(err)}") from err
    folder = Path(snapshot) / "checkpoints" / f"step-{step}"
    if not folder.is_dir():
        raise CheckpointError(f"downloading {spec} gave no {folder}")
    logger.info("resuming from %s@%s step %d (%s)", repo_id, revision, step, folder)
    return folder


def _cached_checkpoint(api: object, repo_id: str, revision: str, cache_dir: str | os.PathLike | None) -> Path:
    try:
        snapshot = Path(api.snapshot_download(repo_id, revision=revision, cache_dir=cache_dir, local_files_only=True))
    except (LocalEntryNotFoundError, OfflineModeIsEnabled, OSError) as err:
        raise CheckpointError(
            f"HF_HUB_OFFLINE=1 is set and {repo_id}@{revision} is not in the cache; unset it to download "
            f"({describe_hub_error(err)})"
        ) from err
    files = [p.relative_to(snapshot).as_posix() for p in snapshot.rglob("*") if p.is_file()]
    step = latest_pushed_step(files)
    if step is None:
        raise CheckpointError(f"HF_HUB_OFFLINE=1 is set and the cached {repo_id}@{revision} has no checkpoint")
    logger.info("offline: resuming from the cached %s@%s step %d", repo_id, revision, step)
    return snapshot / "checkpoints" / f"step-{step}"

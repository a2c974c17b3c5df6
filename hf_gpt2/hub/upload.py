"""Pushing to the Hub: a release to a repo, and checkpoints in the background to a branch.

Every push is ONE commit (``HfApi.create_commit`` with an add operation per file): the files are uploaded first
(deduplicated by the Hub's storage, so a retry sends only what is missing), then a single commit makes them
visible together. An upload that fails halfway therefore leaves the repo as it was, and the local folder is only
read, never changed; pushing again retries. (``upload_folder`` is not used: with ``hf_xet`` installed,
huggingface_hub 2.x splits large folders into several commits.)

Checkpoints go to the branch ``hub.checkpoint_revision`` (default ``checkpoints``) under ``checkpoints/step-N/``,
one commit per checkpoint, so the branch keeps every pushed step and ``main`` holds only releases.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
from huggingface_hub import CommitInfo, CommitOperationAdd, ModelCard
from huggingface_hub.errors import HfHubHTTPError

from hf_gpt2 import online
from hf_gpt2.errors import CheckpointError
from hf_gpt2.folders import UPLOAD_STAGING_PREFIX, storage_errors
from hf_gpt2.hub import common
from hf_gpt2.hub.card import CARD, upload_manifest, write_model_card
from hf_gpt2.hub.common import (
    DEFAULT_CHECKPOINT_REVISION,
    HubSettings,
    check_hub_access,
    describe_hub_error,
    hub_error,
    hub_setting,
    require_repo_id,
)
from hf_gpt2.hub.summary import EVENTS_DIR

logger = logging.getLogger(__name__)

_STAGING_PREFIX = UPLOAD_STAGING_PREFIX


def _commit_files(
    api: Any, repo_id: str, files: dict[str, Path], *, path_in_repo: str, revision: str | None, message: str
) -> CommitInfo:
    """Upload ``files`` (``{path in the repo: local file}``) under ``path_in_repo`` as a single commit."""
    prefix = f"{path_in_repo.strip('/')}/" if path_in_repo.strip("/") else ""
    operations = [
        CommitOperationAdd(path_in_repo=prefix + name, path_or_fileobj=str(path)) for name, path in files.items()
    ]
    return api.create_commit(repo_id, operations=operations, commit_message=message, revision=revision)


def _snapshot_events(files: dict[str, Path], folder: Path) -> dict[str, Path]:
    """Copy the TensorBoard event files of ``files`` into ``folder``: a writer still appending to one (the run's own
    ``tb/``) cannot change it between hashing and upload. Returns ``files`` with the copies in their place."""
    snapshot = dict(files)
    for name, path in files.items():
        if name.startswith(f"{EVENTS_DIR}/"):
            target = folder / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
            snapshot[name] = target
    return snapshot


def _prepare_repo(api: Any, repo_id: str, *, private: bool, revision: str | None) -> None:
    """Create the repo (kept as it is when it exists) and the branch ``revision`` when it is not ``main``."""
    api.create_repo(repo_id, private=private, exist_ok=True)
    if revision and revision != "main":
        api.create_branch(repo_id, branch=revision, exist_ok=True)


def push_release(
    release_dir: str | os.PathLike,
    hub_cfg: HubSettings,
    *,
    token: str | None = None,
    commit_message: str | None = None,
    revision: str | None = None,
    run_dir: str | os.PathLike | None = None,
    rewrite_card: bool = False,
) -> str:
    """Push a release folder to the Hub as one commit, with a model card written for it when it has none.

    The token and the repo are checked first (:func:`~hf_gpt2.hub.common.check_hub_access`), and a new card is
    written to a scratch folder and uploaded from there: the release folder changes only once the commit is on the
    Hub, when it gets the card that was pushed (README.md, loss_curves.png, eval.json, recipe.yaml).

    Args:
        release_dir: the release (``runs/<name>/final`` or any ``save_pretrained`` folder).
        hub_cfg: the recipe's ``hub`` section (or a mapping): ``repo_id``, ``private``, ``license``.
        run_dir: the release's run folder: its TensorBoard events (``tb/``) are uploaded as ``runs/``.
        token: a Hub token; default: ``hf auth login`` / HF_TOKEN. Never logged or written.
        commit_message: default ``"Upload <folder name> with hf_gpt2"``.
        revision: branch to push to (created from ``main`` when missing); default ``main``.
        rewrite_card: write a new card even when the release has one (``hf-gpt2 push`` does for a generated card).

    Returns:
        The URL of the commit.

    Raises:
        RecipeError: ``hub.repo_id`` is missing or malformed.
        HubError: no token, no permission, no network, or the upload failed (the release is untouched; push again).
    """
    release = Path(release_dir)
    repo_id = require_repo_id(hub_setting(hub_cfg, "repo_id"))
    if not (release / "config.json").is_file():
        raise CheckpointError(f"{release} is not a model folder (no config.json); pass a save_pretrained folder")
    token = check_hub_access(repo_id, token)
    api = common.make_api(token)
    message = commit_message or f"Upload {release.name} with hf_gpt2"
    retry = f"; the release is intact: hf-gpt2 push --model {release} --repo-id {repo_id}"
    with storage_errors(Path(tempfile.gettempdir())):  # a local disk, not the Hub: named as such
        scratch_dir = tempfile.TemporaryDirectory(prefix="hf_gpt2-push-")
    with scratch_dir as scratch:
        card_files: dict[str, Path] = {}
        if rewrite_card or not (release / CARD).is_file():
            license = hub_setting(hub_cfg, "license")
            with storage_errors(Path(scratch)):
                card_files = _stage_card(release, run_dir, Path(scratch) / "card", repo_id, license)
        else:
            ModelCard.load(release / CARD)  # fails here on metadata the Hub would refuse
        files = dict(sorted({**upload_manifest(release, run_dir), **card_files}.items()))
        try:
            _prepare_repo(api, repo_id, private=bool(hub_setting(hub_cfg, "private", False)), revision=revision)
            with storage_errors(Path(scratch)):
                files = _snapshot_events(files, Path(scratch) / "events")
            info = _commit_files(api, repo_id, files, path_in_repo="", revision=revision, message=message)
        except (HfHubHTTPError, httpx2.HTTPError, OSError, ValueError) as err:
            raise hub_error("pushing the release to", repo_id, err, retry) from err
        with storage_errors(release):
            for name, path in card_files.items():  # the commit is on the Hub: the release gets the card it shows
                _replace_file(path, release / name)
    url = getattr(info, "commit_url", None) or f"{repo_id}@{revision or 'main'}"
    logger.info("pushed %d files of %s to %s (%s)", len(files), release, repo_id, url)
    return url


def _stage_card(
    release: Path, run_dir: str | os.PathLike | None, folder: Path, repo_id: str, license: str | None
) -> dict[str, Path]:
    """Write the release's card and the files it shows into ``folder``; return them by their name in the repo."""
    write_model_card(release, run_dir, repo_id=repo_id, license=license, output_dir=folder)
    ModelCard.load(folder / CARD)  # fails here on metadata the Hub would refuse
    return {p.name: p for p in sorted(folder.iterdir()) if p.is_file()}


def _replace_file(source: Path, target: Path) -> None:
    """Copy ``source`` over ``target`` through a hidden temporary file, so ``target`` is never half-written."""
    tmp = target.with_name(f".{target.name}.push-{os.getpid()}")
    try:
        shutil.copyfile(source, tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


@dataclass(frozen=True)
class PushFailure:
    """A checkpoint that could not be pushed (its local folder is intact)."""

    step: int
    checkpoint_dir: Path
    error: str


@dataclass
class _Job:
    step: int
    checkpoint_dir: Path
    staged: Path


class CheckpointPusher:
    """Uploads checkpoints to the Hub in a background thread, so training never waits for the network.

    Each :meth:`submit` hard-links the checkpoint's files into a private staging folder (instant, and safe when
    training later rotates the checkpoint away) and returns. One worker thread pushes them in order, each as one
    commit to branch ``hub.checkpoint_revision`` under ``checkpoints/step-N/``. When a newer checkpoint arrives
    before an older one has started uploading, the older one is skipped (resuming needs only the newest).
    A failed upload is retried ``retries`` times, then logged; training goes on. :meth:`close` waits for the
    uploads and logs every failure.

    Create it on the main process only, e.g. ``pusher = CheckpointPusher(recipe.hub)``.
    """

    def __init__(
        self, hub_cfg: HubSettings, *, token: str | None = None, retries: int = 2, retry_wait_s: float = 10.0
    ):
        """Check the repo id, the token and write access now (fail before training starts), and start the worker.

        Raises:
            RecipeError: ``hub.repo_id`` is missing or malformed.
            HubError: no token, no write access, or no Hub to reach (:func:`~hf_gpt2.hub.common.check_hub_access`).
        """
        self.repo_id = require_repo_id(hub_setting(hub_cfg, "repo_id"))
        self.revision = hub_setting(hub_cfg, "checkpoint_revision", DEFAULT_CHECKPOINT_REVISION)
        self.private = bool(hub_setting(hub_cfg, "private", False))
        self._api = common.make_api(check_hub_access(self.repo_id, token))
        self._retries, self._retry_wait_s = retries, retry_wait_s
        self._repo_ready = False
        self._pending: _Job | None = None
        self._current: _Job | None = None
        self._closing = False
        self._busy = False
        self._condition = threading.Condition()
        self.pushed: list[int] = []
        self.skipped: list[int] = []
        self.failures: list[PushFailure] = []
        self._thread = threading.Thread(target=self._work, name="hf_gpt2-checkpoint-push", daemon=True)
        self._thread.start()

    def submit(self, checkpoint_dir: str | os.PathLike, step: int) -> None:
        """Queue ``checkpoint_dir`` (a complete ``step-N`` folder) for upload and return at once."""
        folder = Path(checkpoint_dir)
        if not folder.is_dir():
            raise CheckpointError(f"cannot push checkpoint {folder}: it is not a folder")
        try:
            staged = _stage_links(folder)
        except OSError as err:  # a full disk must not stop training; the checkpoint itself is saved
            logger.error("hub: cannot stage checkpoint step %d for upload (%s); it is not pushed", step, err)
            self.failures.append(PushFailure(step, folder, f"staging failed: {err}"))
            return
        with self._condition:
            self._remove_stale_staging(folder.parent, keep=staged)
            if self._closing:
                shutil.rmtree(staged, ignore_errors=True)
                raise RuntimeError("CheckpointPusher.submit() after close()")
            if self._pending is not None:
                logger.info("hub: checkpoint step %d superseded by step %d before upload", self._pending.step, step)
                self.skipped.append(self._pending.step)
                shutil.rmtree(self._pending.staged, ignore_errors=True)
            self._pending = _Job(step, folder, staged)
            self._condition.notify_all()
        logger.info("hub: queued checkpoint step %d for %s@%s", step, self.repo_id, self.revision)

    def close(self, timeout: float | None = None) -> list[PushFailure]:
        """Wait for queued uploads to finish; log and return the failures (their local folders are intact)."""
        with self._condition:
            self._closing = True
            self._condition.notify_all()
        self._thread.join(timeout)
        if self._thread.is_alive():
            logger.error("hub: checkpoint uploads still running after %.0f s; not waiting longer", timeout or 0)
        for failure in self.failures:
            logger.error(
                "hub: checkpoint step %d was NOT pushed to %s@%s (%s); it is still in %s",
                failure.step,
                self.repo_id,
                self.revision,
                failure.error,
                failure.checkpoint_dir,
            )
        if self.pushed:
            logger.info("hub: pushed checkpoints %s to %s@%s", self.pushed, self.repo_id, self.revision)
        return list(self.failures)

    def __enter__(self) -> CheckpointPusher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- worker thread

    def _work(self) -> None:
        self._ensure_repo()  # at once, so a permission problem shows in the log before the first checkpoint
        while True:
            with self._condition:
                while self._pending is None and not self._closing:
                    self._condition.wait()
                if self._pending is None:
                    return
                job, self._pending = self._pending, None
                self._current = job
            try:
                self._push_with_retries(job)
            finally:
                shutil.rmtree(job.staged, ignore_errors=True)
                with self._condition:
                    self._current = None

    def _remove_stale_staging(self, parent: Path, keep: Path) -> None:
        """Remove staging folders left by a killed run (never the ones this pusher still needs)."""
        active = {keep} | {job.staged for job in (self._pending, self._current) if job is not None}
        for stale in parent.glob(f"{_STAGING_PREFIX}*"):
            if stale not in active:
                shutil.rmtree(stale, ignore_errors=True)

    def _push_with_retries(self, job: _Job) -> None:
        for attempt in range(1, self._retries + 2):
            try:
                self._push(job)
            except Exception as err:  # the network, the Hub, the disk: never let it reach training
                error = online.network_problem(err, f"push checkpoint step {job.step}") or describe_hub_error(err)
                logger.warning(
                    "hub: pushing checkpoint step %d failed (attempt %d of %d): %s",
                    job.step,
                    attempt,
                    self._retries + 1,
                    error,
                )
                if attempt <= self._retries:
                    time.sleep(self._retry_wait_s * attempt)
                    continue
                self.failures.append(PushFailure(job.step, job.checkpoint_dir, error))
                return
            self.pushed.append(job.step)
            logger.info("hub: pushed checkpoint step %d to %s@%s", job.step, self.repo_id, self.revision)
            return

    def _ensure_repo(self) -> None:
        """Create the repo and the branch once; a failure is logged and retried before the next upload."""
        try:
            _prepare_repo(self._api, self.repo_id, private=self.private, revision=self.revision)
            self._repo_ready = True
        except Exception as err:
            logger.warning("hub: %s; trying again at the next checkpoint", hub_error("preparing", self.repo_id, err))

    def _push(self, job: _Job) -> None:
        if not self._repo_ready:
            _prepare_repo(self._api, self.repo_id, private=self.private, revision=self.revision)
            self._repo_ready = True
        files = {p.relative_to(job.staged).as_posix(): p for p in sorted(job.staged.rglob("*")) if p.is_file()}
        _commit_files(
            self._api,
            self.repo_id,
            files,
            path_in_repo=f"checkpoints/step-{job.step}",
            revision=self.revision,
            message=f"Checkpoint step {job.step}",
        )


def _stage_links(folder: Path) -> Path:
    """Hard-link (copy where links fail) every file of ``folder`` into a hidden sibling staging folder."""
    staged = folder.parent / f"{_STAGING_PREFIX}{folder.name}-{time.monotonic_ns()}"
    for path in sorted(folder.rglob("*")):
        if not path.is_file():
            continue
        target = staged / path.relative_to(folder)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(path, target)
        except OSError:
            shutil.copy2(path, target)
    staged.mkdir(parents=True, exist_ok=True)
    return staged

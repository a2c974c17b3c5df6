"""Run folders: ``run.output_dir/<name>/``, with a docker-style name and the hour when none is given; which
checkpoint ``train.resume_from`` names; creating the folder (``recipe.yaml``, ``checkpoints/``, ``tb/``); and
``finished.json``, written when the whole release is (a run with ``final/`` but without it is finished by resuming).

A ``hub:USER/NAME[@REV]`` checkpoint is fetched by the ``download`` function the caller hands in
(:func:`hf_gpt2.pipeline.download_checkpoint`): training itself never talks to the Hub.
"""

from __future__ import annotations

import json
import logging
import random
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from accelerate import Accelerator

from hf_gpt2.errors import CheckpointError, RunFolderError
from hf_gpt2.folders import STAGING_PREFIX, UPLOAD_STAGING_PREFIX, remove_path, storage_errors, write_text_atomically
from hf_gpt2.recipe import Recipe, dump_recipe, recipe_to_dict
from hf_gpt2.training.run_lock import LOCK_FILE
from hf_gpt2.training.state import is_checkpoint, latest_checkpoint

logger = logging.getLogger(__name__)

Download = Callable[[str], Path]
"""Fetches a ``hub:USER/NAME[@REV]`` checkpoint and returns its local folder."""

FINISHED = "finished.json"
"""Written last, once the release, the export, the samples, eval.json, the card and the push are all done."""
STAGING_FOLDERS = (".", "checkpoints", "final")
"""Where a run writes through temporary names (removed at the start of the next run in the folder)."""

_ADJECTIVES = (
    "admiring adoring affectionate amazing awesome blissful bold brave busy calm charming clever cool compassionate "
    "competent confident cranky dazzling determined dreamy eager ecstatic elastic elegant eloquent epic exciting "
    "fervent festive flamboyant focused friendly frosty funny gallant gifted goofy gracious happy hardcore heuristic "
    "hopeful hungry infallible inspiring intelligent jolly jovial keen kind laughing loving lucid magical modest "
    "musing mystifying naughty nervous nice nifty nostalgic objective optimistic peaceful pedantic pensive practical "
    "priceless quirky quizzical relaxed reverent romantic serene sharp silly sleepy stoic strange suspicious sweet "
    "tender thirsty trusting upbeat vibrant vigilant vigorous wizardly wonderful xenodochial youthful zealous zen"
).split()
_SCIENTISTS = (
    "agnesi albattani allen archimedes babbage bardeen bell bhabha blackwell bohr booth bose brahmagupta cannon "
    "carson cerf chandrasekhar curie darwin dijkstra einstein elion euclid euler fermat fermi feynman franklin "
    "galileo gauss goodall hamilton hawking heisenberg hodgkin hopper hypatia jemison johnson kalam kepler knuth "
    "kowalevski lamarr leakey lovelace lumiere mayer mccarthy meitner mendel minsky mirzakhani morse napier newton "
    "nobel noether pare pasteur perlman pike poincare ptolemy raman ramanujan ritchie rubin saha sammet shannon "
    "shockley sinoussi stonebraker swanson tesla thompson torvalds turing villani wiles williams wilson wing wozniak "
    "wright yalow yonath"
).split()


def docker_style_name(rng: random.Random | None = None) -> str:
    """Return ``adjective_scientist`` as docker names its containers, e.g. ``brave_turing``."""
    rng = rng or random.SystemRandom()
    return f"{rng.choice(_ADJECTIVES)}_{rng.choice(_SCIENTISTS)}"


def new_run_name(now: float | None = None) -> str:
    """Return a fresh run name, ``<docker-style-name>-<yymmddHH>`` (UTC)."""
    return f"{docker_style_name()}-{time.strftime('%y%m%d%H', time.gmtime(now))}"


def is_nonempty_dir(path: Path) -> bool:
    """True when ``path`` is a folder with anything in it (the lock file of a run starting there aside)."""
    return path.is_dir() and any(p.name != LOCK_FILE for p in path.iterdir())


def is_finished(run_dir: Path) -> bool:
    """True when the run wrote its whole release (``finished.json``) and the release is there."""
    return (run_dir / FINISHED).is_file() and (run_dir / "final").exists()


def mark_finished(run_dir: Path, facts: dict[str, Any]) -> Path:
    """Write ``finished.json`` (the last file of a run): ``facts`` plus the time."""
    record = {**facts, "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    return write_text_atomically(run_dir / FINISHED, json.dumps(record, indent=2) + "\n")


def check_fresh_run_dir(run_dir: Path) -> None:
    """Refuse to start a fresh run in a folder that already holds something.

    Raises:
        RunFolderError: naming the folder, and ``train.resume_from=latest`` as the way to continue it.
    """
    if run_dir.exists() and not run_dir.is_dir():
        raise RunFolderError(f"run folder {run_dir} exists and is not a folder; choose another run.name")
    if is_nonempty_dir(run_dir):
        raise RunFolderError(
            f"run folder {run_dir} already exists; add train.resume_from=latest to continue it, "
            "or choose another run.name / run.output_dir"
        )


def unused_run_dir(output_dir: Path) -> Path:
    """Return ``output_dir/<new name>`` for a name not used yet."""
    for _ in range(100):
        candidate = output_dir / new_run_name()
        if not candidate.exists():
            return candidate
    raise RunFolderError(f"could not find an unused run name under {output_dir}; set run.name")


def resolve_run(recipe: Recipe, *, download: Download | None = None) -> tuple[Path, Path | None]:
    """Decide the run folder and the checkpoint to resume from (None for a fresh run); writes nothing.

    ``train.resume_from``:
      - None: a fresh run in ``run.output_dir/run.name`` (or a new docker-style name); an existing folder is refused;
      - ``latest``: the newest checkpoint of ``run.output_dir/run.name``; without a name, of the run under
        ``run.output_dir`` with the newest checkpoint. A named run with no checkpoint yet starts fresh (so the
        same command can be requeued after preemption);
      - a checkpoint folder (``.../checkpoints/step-N``) or a run folder (its newest checkpoint);
      - ``hub:USER/NAME[@REV]``: fetched with ``download``; the run gets a new folder.

    It runs on the main process; every process then finds the checkpoint with :func:`checkpoint_on_this_node`.

    Raises:
        RunFolderError: the folder exists for a fresh run, or there is nothing to resume.
        CheckpointError: the named checkpoint does not exist.
    """
    output_dir, spec = Path(recipe.run.output_dir), recipe.train.resume_from
    named = output_dir / recipe.run.name if recipe.run.name else None
    if spec is None:
        return _fresh_run_dir(output_dir, named), None
    if spec == "latest":
        return _latest(output_dir, named)
    if spec.startswith("hub:"):
        return _fresh_run_dir(output_dir, named), _download(spec, download)
    return _from_path(Path(spec), output_dir, named)


def checkpoint_on_this_node(spec: str | None, decided: Path, *, download: Download | None = None) -> Path:
    """The checkpoint that the main process ``decided`` on, as this process finds it.

    On a node that does not share the main's filesystem, a ``hub:`` checkpoint is fetched again with ``download``
    (into this node's huggingface_hub cache); a local folder cannot be reached from here.

    Raises:
        CheckpointError: ``decided`` is a local folder that this process does not see.
    """
    if decided.is_dir():
        return decided
    if spec is not None and spec.startswith("hub:"):
        return _download(spec, download)
    raise CheckpointError(
        f"checkpoint {decided}, chosen by the main process, is not on this node ({socket.gethostname()}): the nodes "
        "do not share its filesystem; put run.output_dir on a filesystem every node shares, or resume from the Hub "
        "with train.resume_from=hub:USER/NAME"
    )


def _fresh_run_dir(output_dir: Path, named: Path | None) -> Path:
    run_dir = named or unused_run_dir(output_dir)
    check_fresh_run_dir(run_dir)
    return run_dir


def _latest(output_dir: Path, named: Path | None) -> tuple[Path, Path | None]:
    if named is not None:
        checkpoint = latest_checkpoint(named / "checkpoints")
        if checkpoint is None:
            logger.warning("%s has no checkpoint yet: starting it fresh", named)
        return _unfinished(named, checkpoint), checkpoint
    runs = [
        (ckpt.stat().st_mtime, run) for run in _subdirs(output_dir) if (ckpt := latest_checkpoint(run / "checkpoints"))
    ]
    if not runs:
        raise RunFolderError(
            f"train.resume_from=latest: no run under {output_dir} has a checkpoint; set run.name, "
            "or drop train.resume_from to start a fresh run"
        )
    run_dir = max(runs)[1]
    checkpoint = latest_checkpoint(run_dir / "checkpoints")
    return _unfinished(run_dir, checkpoint), checkpoint


def _download(spec: str, download: Download | None) -> Path:
    if download is None:
        raise CheckpointError(f"train.resume_from={spec!r} is on the Hub, and this run has no way to download it")
    return Path(download(spec))


def _from_path(path: Path, output_dir: Path, named: Path | None) -> tuple[Path, Path]:
    if is_checkpoint(path):
        own_run = path.parent.parent if path.parent.name == "checkpoints" else None
        # A run's own checkpoint continues that run, unless run.name names another (new) run; a loose one starts one.
        if own_run is not None and (named is None or named.resolve() == own_run.resolve()):
            return _unfinished(own_run, path), path
        return _fresh_run_dir(output_dir, named), path
    checkpoint = latest_checkpoint(path / "checkpoints")
    if checkpoint is None:
        raise CheckpointError(
            f"train.resume_from={path}: no checkpoint there; give a checkpoint folder (run/checkpoints/step-N), "
            "a run folder, or latest"
        )
    return _unfinished(path, checkpoint), checkpoint


def _unfinished(run_dir: Path, checkpoint: Path | None) -> Path:
    """Refuse to continue a run that already wrote its whole release: resuming would overwrite ``final/``.

    A run whose release was begun but not completed (no ``finished.json``: an evaluation, an export or the push
    failed, or SIGTERM came while it was written) continues: from its last step's checkpoint that writes the
    release again and completes it, without training.
    """
    if checkpoint is not None and is_finished(run_dir):
        raise RunFolderError(
            f"{run_dir} is finished (its {FINISHED} and final/ exist) and resuming it would overwrite that release; "
            f"to train on from {checkpoint}, start a new run: run.name=NEW_NAME train.resume_from={checkpoint}"
        )
    if checkpoint is not None and (run_dir / "final").exists():
        logger.warning("%s: its release is not complete (no %s); finishing it from %s", run_dir, FINISHED, checkpoint)
    return run_dir


def _subdirs(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.is_dir()] if folder.is_dir() else []


def start_run_folder(accelerator: Accelerator, recipe: Recipe, run_dir: Path, step: int = 0) -> None:
    """Create the run folder, write the resolved recipe.yaml, and open TensorBoard in ``<run>/tb``.

    ``step`` is where a resumed run continues: TensorBoard drops the events a killed run logged after it. The
    temporary files and folders that an earlier run in this folder left behind (killed, or stopped by a full disk)
    are removed first: the main process holds the folder's lock, so nobody else is writing them.
    """
    if accelerator.is_main_process:
        for stale in stale_staging(run_dir):
            logger.info("removing %s, left behind by an earlier run", stale)
            remove_path(stale)
        with storage_errors(run_dir / "checkpoints"):
            (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        dump_recipe(recipe, run_dir / "recipe.yaml")
    accelerator.wait_for_everyone()
    purge = {"tensorboard": {"purge_step": step + 1}} if step else {}
    accelerator.init_trackers("tb", config=_hparams(recipe_to_dict(recipe)), init_kwargs=purge)


def stale_staging(run_dir: Path) -> list[Path]:
    """The temporary files and folders in a run folder (checkpoints, release, reports and uploads being written)."""
    found = []
    for name in STAGING_FOLDERS:
        folder = run_dir / name
        if folder.is_dir():
            found += [p for p in folder.iterdir() if p.name.startswith((STAGING_PREFIX, UPLOAD_STAGING_PREFIX))]
    return sorted(found)


def _hparams(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten the recipe to the scalar values TensorBoard's hparams accept."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_hparams(value, f"{name}."))
        elif isinstance(value, (int, float, str, bool)):
            flat[name] = value
        else:
            flat[name] = str(value)
    return flat

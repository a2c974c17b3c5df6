"""The model card (a release's README.md) and the folder that is uploaded.

Everything comes from files, so a card can be written for any release, pushed or not: the release's ``config.json``
and ``model.safetensors`` header, the resolved ``recipe.yaml``, ``eval.json`` and the TensorBoard events of the run
(gathered by :mod:`~hf_gpt2.hub.summary`, worded by :mod:`~hf_gpt2.hub.card_text`). The release then carries
``README.md``, ``loss_curves.png`` (and ``eval_curves.png`` for a run that evaluated ``eval.tasks`` during
training), ``recipe.yaml`` and ``eval.json`` beside the weights. The run's events (``<run>/tb/``) are uploaded beside
them as ``runs/`` (the Hub shows them in its Metrics tab) without a copy in the release folder, so
``tensorboard --logdir runs/`` shows each run once."""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from huggingface_hub import ModelCard
from huggingface_hub.utils import filter_repo_objects

from hf_gpt2.errors import CheckpointError
from hf_gpt2.eval_report import EvalReport
from hf_gpt2.folders import write_text_atomically
from hf_gpt2.hub.card_text import EVAL_PNG, GENERATED_MARKER, LOSS_PNG, render_card
from hf_gpt2.hub.curves import EVENTS_GLOB, eval_panels, event_dirs, plot_eval_panels, plot_losses
from hf_gpt2.hub.summary import EVAL, EVENTS_DIR, RECIPE, gather_summary

logger = logging.getLogger(__name__)

CARD = "README.md"
RELEASE_IGNORE = [".*", "*/.*", "__pycache__/*", "*/__pycache__/*", "*.pyc", "*.tmp"]
"""Never uploaded: hidden files and folders (``.tmp`` staging, editor files), Python caches."""


# ----------------------------------------------------------------------------------------------- files


def write_model_card(
    release_dir: str | os.PathLike,
    run_dir: str | os.PathLike | None = None,
    *,
    base_model: str | None = None,
    datasets: list[str] | None = None,
    eval_results: EvalReport | Mapping[str, Any] | None = None,
    repo_id: str | None = None,
    license: str | None = None,
    output_dir: str | os.PathLike | None = None,
) -> Path:
    """Write the release's README.md and what it shows: loss_curves.png, recipe.yaml, eval.json.

    Call it on the main process once the release and ``eval.json`` are written. Without ``run_dir`` the card is
    built from the copies already in the release.

    Args:
        release_dir: the release folder (``runs/<name>/final``).
        run_dir: the run folder (``recipe.yaml``, ``eval.json``, ``tb/``, ``checkpoints/``).
        base_model: Hub id of the model this one was finetuned from (default: the recipe's ``model.init`` when it
            is a Hub id).
        datasets: Hub dataset ids trained on (default: the recipe's ``data.source`` when it is ``hub:<id>``).
        eval_results: an :class:`~hf_gpt2.eval_report.EvalReport` (or its ``eval.json`` object, e.g.
            ``{"val_loss": x, task: {metric: value, "n": count}}``) instead of ``eval.json``.
        repo_id: the Hub id used in the usage snippets (default: the recipe's ``hub.repo_id``).
        license: the card's license (default: the recipe's ``hub.license``, else ``mit``).
        output_dir: where to write those files instead of the release (a push stages them there, so the release
            changes only once the upload succeeded); the release is only read.

    Returns:
        The README.md path.
    """
    release = Path(release_dir)
    if not release.is_dir():
        raise CheckpointError(f"release folder {release} does not exist")
    run = Path(run_dir) if run_dir is not None else None
    out = Path(output_dir) if output_dir is not None else release
    out.mkdir(parents=True, exist_ok=True)
    if run is not None:
        _copy_run_files(run, release, out)
    report = None if eval_results is None else _as_report(eval_results)
    summary = gather_summary(release, run, report=report)
    if report is not None:
        report.write(out / EVAL)
    try:
        plot = plot_losses(summary.curves, out / LOSS_PNG, title=repo_id or summary.section("run").get("name"))
    except Exception as err:  # a broken font cache or backend must not cost the run its card
        logger.warning("could not draw %s (%s); the card goes without it", LOSS_PNG, err)
        plot = None
    try:
        eval_plot = plot_eval_panels(eval_panels(summary.report), out / EVAL_PNG)
    except Exception as err:  # as for the loss curves: the card goes without the picture, never without the card
        logger.warning("could not draw %s (%s); the card goes without it", EVAL_PNG, err)
        eval_plot = None
    card = render_card(
        summary,
        repo_id=repo_id or summary.section("hub").get("repo_id"),
        license=license,
        base_model=base_model,
        datasets=datasets,
        has_plot=plot is not None,
        has_eval_plot=eval_plot is not None,
        has_events=bool(run_events(release, run)),
    )
    path = out / CARD
    write_text_atomically(path, card)
    logger.info("model card written to %s", path)
    return path


def _copy_run_files(run: Path, release: Path, out: Path) -> None:
    if (run / RECIPE).is_file() and not (release / RECIPE).is_file():  # the release's own copy wins
        shutil.copy2(run / RECIPE, out / RECIPE)
    if (run / EVAL).is_file():  # eval.json is written after the release, so the run's copy is the newest
        shutil.copy2(run / EVAL, out / EVAL)


def is_generated_card(path: str | os.PathLike) -> bool:
    """True when ``path`` is a README.md that hf_gpt2 wrote and nobody marked as hand-edited."""
    try:
        return GENERATED_MARKER in Path(path).read_text(encoding="utf-8")
    except OSError:
        return False


def run_events(release_dir: str | os.PathLike, run_dir: str | os.PathLike | None = None) -> dict[str, Path]:
    """The TensorBoard event files a push uploads, as ``{path in the repo: local file}`` (repo paths under ``runs/``).

    They are the run's own ``tb/`` files when there is a run folder with events; otherwise whatever the release
    already holds under ``runs/`` (a release downloaded from the Hub, or written by an older hf_gpt2).
    """
    release = Path(release_dir)
    source = Path(run_dir) / "tb" if run_dir is not None else None
    if source is None or not event_dirs(source):
        source = release / EVENTS_DIR
    files = sorted(p for p in source.rglob(EVENTS_GLOB) if p.is_file()) if source.is_dir() else []
    return {f"{EVENTS_DIR}/{p.relative_to(source).as_posix()}": p for p in files}


def upload_manifest(release_dir: str | os.PathLike, run_dir: str | os.PathLike | None = None) -> dict[str, Path]:
    """The exact files a push uploads, as ``{path in the repo: local file}`` sorted by repo path.

    The release's files (hidden files and caches left out, see ``RELEASE_IGNORE``) and the run's TensorBoard events
    under ``runs/`` (:func:`run_events`). With a run folder, an older copy of the events inside the release is left
    out (the run's own files are the newest) and named in the log: TensorBoard shows that run twice until it is
    deleted.
    """
    root = Path(release_dir)
    events = run_events(root, run_dir)
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    kept = filter_repo_objects(files, ignore_patterns=RELEASE_IGNORE)
    manifest = {name: root / name for name in kept if not name.startswith(f"{EVENTS_DIR}/")}
    old_copy = root / EVENTS_DIR
    if run_dir is not None and event_dirs(Path(run_dir) / "tb") and event_dirs(old_copy):
        logger.warning(
            "%s is an old copy of the run's TensorBoard events (`tensorboard --logdir` shows the run twice); "
            "the push uploads %s instead: delete the copy",
            old_copy,
            Path(run_dir) / "tb",
        )
    manifest.update(events)
    return dict(sorted(manifest.items()))


def stage_release(
    release_dir: str | os.PathLike,
    run_dir: str | os.PathLike | None = None,
    *,
    rewrite_card: bool | None = None,
    **card_kwargs: Any,
) -> dict[str, Path]:
    """Write the model card a push needs and return the push's files (:func:`upload_manifest`).

    The card is (re)written when ``rewrite_card`` is true (by default: when ``run_dir`` is given) or when the release
    has no README.md yet; otherwise a card already in the release is kept as it is, so hand edits survive.
    """
    release = Path(release_dir)
    if rewrite_card is None:
        rewrite_card = run_dir is not None
    if rewrite_card or not (release / CARD).is_file():
        write_model_card(release, run_dir, **card_kwargs)
    card = ModelCard.load(release / CARD)  # fails early on metadata the Hub would refuse
    if card.data.library_name is None and not card.data.to_dict():
        logger.warning("%s has no YAML metadata", release / CARD)
    return upload_manifest(release, run_dir)


def _as_report(results: EvalReport | Mapping[str, Any]) -> EvalReport:
    return results if isinstance(results, EvalReport) else EvalReport.from_json(results, where="eval_results")

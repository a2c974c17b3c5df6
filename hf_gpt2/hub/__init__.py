"""Sharing on the Hugging Face Hub: the model card, pushing releases and checkpoints, resuming from a pushed step.

- :func:`write_model_card` / :func:`stage_release`: every release gets a README.md (metadata, training summary,
  loss curves, evaluation beside GPT-2's numbers, usage), plus ``loss_curves.png``, ``recipe.yaml`` and ``eval.json``.
- :func:`push_release`: the release folder as one commit (``hf-gpt2 push``; ``hub.push_final``), with the run's
  TensorBoard events as ``runs/`` (:func:`upload_manifest`; they are not copied into the release).
- :class:`CheckpointPusher`: checkpoints in a background thread to a branch (``hub.push_checkpoints``).
- :func:`download_checkpoint`: ``train.resume_from="hub:USER/NAME[@REV]"``.

The token comes from ``hf auth login`` or HF_TOKEN and is never logged or written. :func:`check_hub_access` checks a
token and write access before anything is written (a push, and a run that pushes, before it trains);
:func:`hub_error` words a failed Hub call as one line.
"""

from __future__ import annotations

from hf_gpt2.hub.card import (
    RELEASE_IGNORE,
    is_generated_card,
    run_events,
    stage_release,
    upload_manifest,
    write_model_card,
)
from hf_gpt2.hub.card_text import render_card
from hf_gpt2.hub.common import DEFAULT_CHECKPOINT_REVISION, HubError, check_hub_access, hub_error, require_token
from hf_gpt2.hub.curves import Curves, plot_losses, read_curves
from hf_gpt2.hub.download import download_checkpoint, parse_hub_spec
from hf_gpt2.hub.summary import RunSummary, gather_summary
from hf_gpt2.hub.upload import CheckpointPusher, PushFailure, push_release

__all__ = [
    "DEFAULT_CHECKPOINT_REVISION",
    "RELEASE_IGNORE",
    "CheckpointPusher",
    "Curves",
    "HubError",
    "PushFailure",
    "RunSummary",
    "download_checkpoint",
    "check_hub_access",
    "gather_summary",
    "hub_error",
    "is_generated_card",
    "parse_hub_spec",
    "plot_losses",
    "push_release",
    "read_curves",
    "render_card",
    "require_token",
    "run_events",
    "stage_release",
    "upload_manifest",
    "write_model_card",
]

"""What the Hub modules share: the token, the HfApi client, the recipe's ``hub`` section and the error type."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

from huggingface_hub import HfApi, get_token

from hf_gpt2 import __version__
from hf_gpt2.errors import HfGPT2Error, RecipeError
from hf_gpt2.recipe import HubConfig

HubSettings = HubConfig | Mapping[str, Any]
"""The recipe's ``hub`` section, or a mapping with the same keys (``hf-gpt2 push`` builds one from its flags)."""

DEFAULT_CHECKPOINT_REVISION = "checkpoints"
"""Branch that :class:`~hf_gpt2.hub.CheckpointPusher` pushes to and ``hub:USER/NAME`` (no ``@REV``) resumes from."""

REPO_ID_PATTERN = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_TOKEN_HELP = "log in with `hf auth login` (or `huggingface-cli login`), or set the HF_TOKEN environment variable"


class HubError(HfGPT2Error):
    """Talking to the Hugging Face Hub failed: no token, no permission, a missing repo, or a failed upload."""


def hub_setting(hub_cfg: HubSettings | None, key: str, default: Any = None) -> Any:
    """Read ``key`` from the recipe's ``hub`` section or a mapping."""
    if hub_cfg is None:
        return default
    if isinstance(hub_cfg, Mapping):
        value = hub_cfg.get(key, default)
    else:
        value = getattr(hub_cfg, key, default)
    return default if value is None else value


def require_repo_id(repo_id: str | None) -> str:
    """Return ``repo_id`` when it has the form ``USER/NAME``.

    Raises:
        RecipeError: naming the bad value and the form it needs.
    """
    if not repo_id:
        raise RecipeError("hub.repo_id is not set; set hub.repo_id=USER/NAME (or pass --repo-id USER/NAME)")
    if not REPO_ID_PATTERN.match(repo_id):
        raise RecipeError(f"hub.repo_id={repo_id!r} is not a Hub repo id; use the form USER/NAME or ORG/NAME")
    return repo_id


def require_token(token: str | None = None) -> str:
    """Return ``token``, or the one from ``hf auth login`` / HF_TOKEN; the value is never logged or written.

    Raises:
        HubError: there is no token, with the two ways to provide one.
    """
    token = token or get_token()
    if not token:
        raise HubError(f"no Hugging Face token found: {_TOKEN_HELP}")
    return token


def make_api(token: str | bool | None = None) -> HfApi:
    """Return the HfApi client every hub function goes through.

    ``HF_ENDPOINT`` is read at each call (huggingface_hub reads it once, at import), so a mirror or a local test
    server can be chosen after import.
    """
    endpoint = os.environ.get("HF_ENDPOINT") or None
    return HfApi(endpoint=endpoint, token=token, library_name="hf_gpt2", library_version=__version__)


def describe_hub_error(err: BaseException) -> str:
    """One line about a huggingface_hub error: its class and first line, without any header or token."""
    first = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return f"{type(err).__name__}: {first}" if first else type(err).__name__

"""What the Hub modules share: the token, the HfApi client, the recipe's ``hub`` section, the access check made
before a push (:func:`check_hub_access`) and the one translation of Hub errors into one line (:func:`hub_error`)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from huggingface_hub import HfApi, get_token
from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled, RepositoryNotFoundError, RevisionNotFoundError

from hf_gpt2 import __version__, online
from hf_gpt2.errors import HubError, RecipeError
from hf_gpt2.locations import repo_id_problem
from hf_gpt2.recipe import HubConfig

HubSettings = HubConfig | Mapping[str, Any]
"""The recipe's ``hub`` section, or a mapping with the same keys (``hf-gpt2 push`` builds one from its flags)."""

DEFAULT_CHECKPOINT_REVISION = "checkpoints"
"""Branch that :class:`~hf_gpt2.hub.CheckpointPusher` pushes to and ``hub:USER/NAME`` (no ``@REV``) resumes from."""

_TOKEN_HELP = "log in with `hf auth login` (or `huggingface-cli login`), or set the HF_TOKEN environment variable"
_WRITE_TOKEN_HELP = "create a write token at https://huggingface.co/settings/tokens and `hf auth login` with it"


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
    problem = repo_id_problem(repo_id)
    if problem:
        raise RecipeError(f"hub.repo_id={problem}")
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


def check_hub_access(repo_id: str | None, token: str | None = None) -> str:
    """Check that a push to ``repo_id`` can work, before anything is written or uploaded; return the token.

    In order: the repo id's form, a token (``hf auth login`` / HF_TOKEN), ``HF_HUB_OFFLINE`` unset, a Hub that
    answers (:func:`hf_gpt2.online.require_hub_reachable`), a token the Hub accepts (``whoami``), and write access to
    the repo's namespace (your user name, or an organization you may write to; a read-only token is refused). Nothing
    is created or changed, locally or on the Hub. A fine-grained token's per-repo permissions are left to the push.

    Raises:
        RecipeError: the repo id is missing or malformed.
        HubError: one line naming what is missing and how to fix it.
    """
    repo_id = require_repo_id(repo_id)
    token = require_token(token)
    if online.hub_offline():
        raise HubError(f"HF_HUB_OFFLINE=1 is set; unset it to push to {repo_id} (nothing was sent)")
    online.require_hub_reachable(f"push to {repo_id}")
    try:
        identity = make_api(token).whoami()
    except Exception as err:  # huggingface_hub and httpx raise several types; hub_error names each
        raise hub_error("checking your token for", repo_id, err) from err
    problem = write_access_problem(identity, repo_id.split("/")[0])
    if problem:
        raise HubError(f"cannot push to {repo_id}: {problem}")
    return token


def write_access_problem(identity: Mapping[str, Any], namespace: str) -> str | None:
    """Why the token that ``whoami`` describes cannot create or write repos under ``namespace``, or None."""
    token_info = (identity.get("auth") or {}).get("accessToken") or {}
    if token_info.get("role") == "read":
        return f"your token is read-only, so it has no write access; {_WRITE_TOKEN_HELP}"
    if identity.get("type", "user") != "user" or namespace == identity.get("name"):
        return None
    orgs = {org.get("name"): org for org in identity.get("orgs") or [] if isinstance(org, Mapping)}
    if namespace not in orgs:
        names = ", ".join(sorted(filter(None, orgs))) or "none"
        return (
            f"your token (user {identity.get('name')!r}, organizations: {names}) has no write access to the "
            f"namespace {namespace!r}; push to {identity.get('name')}/NAME or to an organization you belong to"
        )
    if orgs[namespace].get("roleInOrg") == "read":
        return f"you are a read-only member of {namespace!r}, which gives no write access; ask its admins for write"
    return None


def hub_error(action: str, repo_id: str, err: BaseException, retry: str = "") -> HubError:
    """One line for a failed Hub call ``action`` on ``repo_id`` (e.g. ``"pushing the release to"``), with the fix.

    ``retry`` is appended: how to try again, e.g. the command that does.
    """
    if isinstance(err, OfflineModeIsEnabled):
        return HubError(f"{action} {repo_id} failed: HF_HUB_OFFLINE=1 is set; unset it to push{retry}")
    network = online.network_problem(err, f"finish {action} {repo_id}")
    if network is not None:
        return HubError(f"{action} {repo_id} failed: {network}; nothing was committed{retry}")
    if isinstance(err, RepositoryNotFoundError):
        hint = "the repo does not exist, or your token cannot see it"
    elif isinstance(err, RevisionNotFoundError):
        hint = "that branch does not exist"
    elif isinstance(err, HfHubHTTPError) and err.response is not None and err.response.status_code == 401:
        hint = f"the Hub does not accept your token (invalid or expired): {_TOKEN_HELP}"
    elif isinstance(err, HfHubHTTPError) and err.response is not None and err.response.status_code == 403:
        hint = "your token is invalid or has no write access to that namespace (`hf auth login` with a write token)"
    else:
        hint = "nothing was committed; run the same push again to retry"
    return HubError(f"{action} {repo_id} failed: {hint} ({describe_hub_error(err)}){retry}")

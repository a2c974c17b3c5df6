"""Before a push: may this token write to this repo? Asked once, before the work that ends in the push.

:func:`check_push_access` is what a run with ``hub.push_final`` or ``hub.push_checkpoints`` asks before it trains,
so that hours of training never end in "no token" or "no write access".
"""

from __future__ import annotations

import logging
from typing import Any

import huggingface_hub.constants
from huggingface_hub.errors import HfHubHTTPError

from hf_gpt2.hub import common
from hf_gpt2.hub.common import HubError, HubSettings, describe_hub_error, hub_setting, require_repo_id, require_token

logger = logging.getLogger(__name__)

_LATER = (
    "set hub.push_final=false and hub.push_checkpoints=false to train without the Hub (and push the release later "
    "with `hf-gpt2 push`)"
)


def check_push_access(hub_cfg: HubSettings, *, token: str | None = None, setting: str = "hub.push_final") -> str:
    """Check that a push to ``hub.repo_id`` can work: a repo id, a token, the Hub reachable, and a token that may
    write to the repo's namespace (the user's own, or one of their organisations). Changes nothing on the Hub.

    Args:
        hub_cfg: the recipe's ``hub`` section (or a mapping with ``repo_id``).
        token: a Hub token; default: ``hf auth login`` / HF_TOKEN (never logged).
        setting: the setting that asks for the push, named in the messages.

    Returns:
        The account name the token belongs to.

    Raises:
        RecipeError: ``hub.repo_id`` is missing or malformed.
        HubError: no token, offline mode, the Hub unreachable, an invalid or read-only token, or a namespace the
            token's account cannot write to; the message names the setting and the fix.
    """
    repo_id = require_repo_id(hub_setting(hub_cfg, "repo_id"))
    try:
        token = require_token(token)
    except HubError as err:
        raise HubError(f"{setting}: {err}") from None
    if huggingface_hub.constants.HF_HUB_OFFLINE:
        raise HubError(f"{setting} pushes to the Hub, but HF_HUB_OFFLINE=1 is set: unset it, or {_LATER}")
    try:
        account = common.make_api(token).whoami()
    except HfHubHTTPError as err:
        status = err.response.status_code if err.response is not None else None
        if status == 401:
            raise HubError(
                f"{setting}: the Hub refused your token as invalid or expired; log in again with `hf auth login` "
                f"(or set HF_TOKEN to a valid token), or {_LATER}"
            ) from err
        raise HubError(f"{setting}: checking your token with the Hub failed ({describe_hub_error(err)}); "
                       f"run again, or {_LATER}") from err  # fmt: skip
    except Exception as err:  # the request never got an answer: DNS, refused, timed out, TLS
        raise HubError(f"{setting}: the Hub could not be reached to check your token ({describe_hub_error(err)}); "
                       f"check the network, or {_LATER}") from err  # fmt: skip
    check_namespace(account, repo_id, setting)
    return str(account.get("name"))


def check_namespace(account: dict[str, Any], repo_id: str, setting: str = "hub.push_final") -> None:
    """Refuse a read-only token, or a repo outside the namespaces of the token's account (``whoami``'s answer).

    Raises:
        HubError: naming the token's account, its namespaces and the fix.
    """
    namespace = repo_id.split("/")[0]
    name = account.get("name")
    access = (account.get("auth") or {}).get("accessToken") or {}
    if access.get("role") == "read":
        raise HubError(
            f"{setting}: your token ({access.get('displayName') or 'unnamed'}) is read-only and cannot push to "
            f"{repo_id}; log in with a write token (`hf auth login`), or {_LATER}"
        )
    orgs = sorted(org.get("name") for org in account.get("orgs") or [] if org.get("name"))
    if namespace != name and namespace not in orgs:
        yours = ", ".join([str(name), *orgs])
        raise HubError(
            f"hub.repo_id={repo_id!r}: your token's account {name!r} cannot push to the namespace {namespace!r} "
            f"(yours: {yours}); use one of those as USER in hub.repo_id=USER/NAME"
        )
    logger.info("hub: %s may push to %s", name, repo_id)

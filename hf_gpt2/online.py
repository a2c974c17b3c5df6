"""Reaching the Hugging Face Hub: one quick check before the first Hub request, network failures as one line, and
huggingface_hub's retry warnings said once.

Without a network huggingface_hub retries a request five times (1 + 2 + 4 + 8 + 8 s) and logs every try, so a Hub
path would print half a minute of warnings before its error. Every Hub path of hf_gpt2 (a push, checkpoint uploads,
``train.resume_from=hub:``, ``model.init`` and ``--model`` Hub ids, ``hub:`` datasets, benchmark data, tokenizers)
first calls :func:`require_hub_reachable`: one request without retries, and when nothing answers a
:class:`~hf_gpt2.errors.HubError` that says the Hub could not be reached and what to set. With ``HF_HUB_OFFLINE=1``
nothing is sent and the libraries read their caches only. A failure later on (the network drops mid-way) is said
once by :func:`say_retries_once` and ends in the same one line (:func:`network_problem`).
"""

from __future__ import annotations

import logging
import os
import threading

import httpx2
from huggingface_hub import constants
from huggingface_hub.errors import LocalEntryNotFoundError, OfflineModeIsEnabled
from huggingface_hub.utils import get_session

from hf_gpt2.errors import HubError
from hf_gpt2.locations import is_hub_id

logger = logging.getLogger(__name__)

NETWORK_FIX = (
    "check the network, or set HF_HUB_OFFLINE=1 to use only what is cached, HF_ENDPOINT=URL for a mirror, "
    "or HTTPS_PROXY=URL for a proxy"
)
"""What to do when the Hub cannot be reached, said by every such error."""

_RETRY_LOGGER = "huggingface_hub.utils._http"
_RETRY_MESSAGES = ("thrown while requesting", "Retrying in", "Rate limited. Waiting")
_reached: set[str] = set()
_lock = threading.Lock()


def hub_endpoint() -> str:
    """The Hub's URL: ``HF_ENDPOINT`` (read now, so a mirror can be chosen after import), else huggingface.co."""
    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def hub_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` is set: the libraries then read their caches and send nothing."""
    return constants.is_offline_mode()


def require_hub_reachable(purpose: str, alternative: str | None = None) -> None:
    """Make sure the Hub answers before ``purpose`` (e.g. ``"download openai-community/gpt2"``) talks to it.

    One request with huggingface_hub's own session (proxies and certificates as configured) and its metadata timeout
    (``HF_HUB_ETAG_TIMEOUT``, 10 s), no retries; an endpoint that answered once is not asked again. Any HTTP answer
    counts: a missing repo or a bad token is for the call itself to report. Nothing is sent with ``HF_HUB_OFFLINE``.

    Args:
        purpose: what needs the Hub, worded to follow "to".
        alternative: another way out the message offers, e.g. ``"pass a local copy with --data lambada=PATH"``.

    Raises:
        HubError: nothing answered, naming the endpoint, the reason and what to set.
    """
    say_retries_once()
    if hub_offline():
        return
    endpoint = hub_endpoint()
    if endpoint in _reached:
        return
    try:
        get_session().head(endpoint, timeout=constants.HF_HUB_ETAG_TIMEOUT, follow_redirects=False)
    except (httpx2.TransportError, OSError) as err:
        raise HubError(unreachable_message(purpose, err) + (f"; or {alternative}" if alternative else "")) from err
    with _lock:
        _reached.add(endpoint)


def require_hub_reachable_for(name_or_path: str, purpose: str) -> None:
    """:func:`require_hub_reachable` when ``name_or_path`` is a Hub id (:func:`hf_gpt2.locations.is_hub_id`); a local
    path needs no network and passes."""
    if is_hub_id(str(name_or_path)):
        require_hub_reachable(purpose)


def unreachable_message(purpose: str, err: BaseException) -> str:
    """The one line for a Hub that did not answer while trying to ``purpose``."""
    return f"could not reach the Hugging Face Hub at {hub_endpoint()} to {purpose} ({_reason(err)}); {NETWORK_FIX}"


def network_problem(err: BaseException, purpose: str) -> str | None:
    """The one-line message when ``err`` (or an error it was raised from) is a network failure, else None.

    Libraries wrap the network error (transformers in an ``OSError`` "We couldn't connect to ...", datasets in a
    ``ConnectionError``), so the whole ``__cause__`` / ``__context__`` chain is searched.
    """
    chain = _chain(err)
    if any(isinstance(link, OfflineModeIsEnabled) for link in chain) or (
        hub_offline() and any(isinstance(link, LocalEntryNotFoundError) for link in chain)
    ):
        return (
            f"HF_HUB_OFFLINE=1 is set and what it takes to {purpose} is not in the local cache; unset HF_HUB_OFFLINE "
            "to use the Hub"
        )
    for link in chain:
        if isinstance(link, (httpx2.TransportError, ConnectionError, TimeoutError)):  # httpx's, or the socket's own
            return unreachable_message(purpose, link)
    return None


def _chain(err: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    link: BaseException | None = err
    while link is not None and link not in seen:
        seen.append(link)
        link = link.__cause__ or link.__context__
    return seen


def _reason(err: BaseException) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


class _SayOnce(logging.Filter):
    """Lets the first retry warning of an outage through, reworded, and drops the rest of it."""

    QUIET_S = 60.0
    """A retry within this many seconds of the last one belongs to the same outage and is not shown."""

    def __init__(self) -> None:
        super().__init__()
        self.last: float | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if not any(marker in message for marker in _RETRY_MESSAGES):
            return True
        last, self.last = self.last, record.created
        if last is not None and record.created - last < self.QUIET_S:
            return False
        record.msg, record.args = (
            "the Hub did not answer (%s); huggingface_hub retries for up to 30 s without saying so again "
            "(set HF_HUB_OFFLINE=1 to use only what is cached)",
            (message,),
        )
        return True


def say_retries_once() -> None:
    """Reduce huggingface_hub's retry warnings to one, and stop them printing twice.

    huggingface_hub logs each retry through its own stderr handler and passes the record on to the root logger, so
    an application that configured logging (``hf-gpt2`` does) shows every line twice: when the root logger has a
    handler, the library's own one is removed. Calling it again changes nothing.
    """
    retry_logger = logging.getLogger(_RETRY_LOGGER)
    with _lock:
        if not any(isinstance(f, _SayOnce) for f in retry_logger.filters):
            retry_logger.addFilter(_SayOnce())
        library = logging.getLogger("huggingface_hub")
        if logging.getLogger().handlers and library.propagate:
            for handler in list(library.handlers):
                if type(handler) is logging.StreamHandler:
                    library.removeHandler(handler)

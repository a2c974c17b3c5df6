"""How recipe problems are worded: a bad choice with a did-you-mean, and many problems as one message."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence


def check_choice(problems: list[str], key: str, value: str, choices: Sequence[str]) -> None:
    """Add a problem to ``problems`` when ``value`` is not one of ``choices`` (with the closest choice, if any)."""
    if value not in choices:
        problems.append(f"{key}={value!r} is not one of {', '.join(choices)}{did_you_mean(value, choices)}")


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the choice closest to ``word``, or an empty string."""
    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {match[0]!r}?)" if match else ""


def format_problems(problems: Sequence[str], origin: str | None = None) -> str:
    """One message for every problem: ``origin: problem``, or ``origin: N problems: (1) ...; (2) ...``."""
    where = f"{origin}: " if origin else ""
    if len(problems) == 1:
        return f"{where}{problems[0]}"
    return f"{where}{len(problems)} problems: " + "; ".join(f"({i}) {p}" for i, p in enumerate(problems, 1))

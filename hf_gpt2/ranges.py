"""Allowed ranges of numeric settings, stated once: the command line checks its options with them while parsing,
and the library functions that take the same settings (:func:`hf_gpt2.generation.generate_text`) check with them
too, so both refuse a value in the same words. Pure Python: parsing imports neither torch nor transformers."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Range:
    """A closed or half-open interval of numbers (of integers with ``integer``), with what its edge values mean."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    """``low`` itself is outside the range."""
    high_open: bool = False
    integer: bool = False
    note: str = ""
    """What a special value means, e.g. ``"0 turns it off"``; said in the message."""

    def describe(self) -> str:
        """The range in words: ``an integer >= 1``, ``a number in (0, 1]``."""
        kind = "an integer" if self.integer else "a number"
        if self.low is not None and self.high is not None:
            left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
            text = f"{kind} in {left}{_num(self.low)}, {_num(self.high)}{right}"
        elif self.low is not None:
            text = f"{kind} {'>' if self.low_open else '>='} {_num(self.low)}"
        elif self.high is not None:
            text = f"{kind} {'<' if self.high_open else '<='} {_num(self.high)}"
        else:
            text = f"a finite {kind.removeprefix('a ').removeprefix('an ')}"
        return f"{text} ({self.note})" if self.note else text

    def contains(self, value: float) -> bool:
        """True when ``value`` (an int for an integer range) lies in the range."""
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return False
        if self.integer and not isinstance(value, int):
            return False
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return False
        return not (self.high is not None and (value > self.high or (self.high_open and value == self.high)))

    def problem(self, name: str, value: object) -> str | None:
        """None when ``value`` is in the range, else ``"name=value is not <the range>"``."""
        if isinstance(value, (int, float)) and self.contains(value):
            return None
        return f"{name}={value!r} is not {self.describe()}"

    def parse(self, text: str) -> int | float:
        """Read ``text`` as this range's kind of number and check it.

        Raises:
            ValueError: naming the text and the range.
        """
        try:
            value: int | float = int(text) if self.integer else float(text)
        except ValueError:
            raise ValueError(f"{text!r} is not {self.describe()}") from None
        if not self.contains(value):
            raise ValueError(f"{text} is not {self.describe()}")
        return value


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


SAMPLING = {
    "max_new_tokens": Range(1, integer=True),
    "temperature": Range(0, note="0 is greedy"),
    "top_k": Range(0, integer=True, note="0 turns top-k off"),
    "top_p": Range(0, 1, low_open=True, note="1 keeps every token"),
    "repetition_penalty": Range(0, low_open=True, note="1 is no penalty"),
    "num_return_sequences": Range(1, integer=True),
}
"""The ranges of :func:`hf_gpt2.generation.sampling_kwargs`'s settings (and of ``hf-gpt2 generate``'s flags)."""

SEED = Range(0, 2**32 - 1, integer=True)
"""Seeds numpy, Python and torch accept alike."""

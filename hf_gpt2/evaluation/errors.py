"""Errors of the benchmark suite. All are :class:`hf_gpt2.errors.HfGPT2Error`, so the CLI prints them as one line."""

from __future__ import annotations

from hf_gpt2.errors import DataError, HfGPT2Error

__all__ = ["ContextLengthError", "DataError", "UnknownTaskError"]


class UnknownTaskError(HfGPT2Error):
    """A task or task group name is not known (the message lists the names and suggests the closest one)."""


class ContextLengthError(HfGPT2Error):
    """The model's context is shorter than a task needs (a target that does not fit, or a window too long)."""

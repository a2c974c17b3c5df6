"""The rules every hf_gpt2 model field must pass, in one place and without transformers.

``HfGPT2Config`` checks itself with :func:`field_problems` (this file travels to the Hub with every release, imported
relatively by the configuration file), and a recipe checks its ``model`` section with the same function before any
data is read, so both refuse the same values with the same words. Only the standard library is imported here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

GPT2_VOCAB_SIZE = 50257
"""Tokens of OpenAI's GPT-2 BPE (50,000 merges, 256 bytes and ``<|endoftext|>``)."""
GPT2_EOS_ID = 50256
"""The id of ``<|endoftext|>``, GPT-2's BOS and EOS token."""
ACTIVATIONS = ("gelu_new", "gelu_pytorch_tanh", "gelu", "relu", "silu", "gelu_fast", "quick_gelu")
"""MLP activations the model implements (``gelu_new`` is GPT-2's tanh-GELU, run as one fused kernel)."""
POSITIVE_INTEGERS = ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head", "vocab_pad_multiple")
DROPOUTS = ("resid_pdrop", "embd_pdrop", "attn_pdrop")
POSITIVE_FLOATS = ("layer_norm_epsilon", "initializer_range")
CHECKED_FIELDS = (*POSITIVE_INTEGERS, "n_inner", *DROPOUTS, *POSITIVE_FLOATS, "loss_chunk_size", "activation_function")
"""The fields :func:`field_problems` checks."""


def field_problems(fields: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Return every problem of these model fields (empty when they are valid); a missing field is not checked.

    Args:
        fields: field name → value, e.g. ``{"n_embd": 768, "n_head": 12, ...}``.
        prefix: put before each field name in the messages (``"model."`` for a recipe's ``model`` section).
    """
    problems: list[str] = []
    for name in POSITIVE_INTEGERS:
        if name in fields and not _is_positive_int(fields[name]):
            problems.append(f"{prefix}{name} must be a positive integer, got {fields[name]!r}")
    n_embd, n_head = fields.get("n_embd"), fields.get("n_head")
    if _is_positive_int(n_embd) and _is_positive_int(n_head) and n_embd % n_head != 0:
        problems.append(
            f"{prefix}n_embd={n_embd} is not divisible by {prefix}n_head={n_head}; "
            f"use an n_head that divides {n_embd} (e.g. {divisor_near(n_embd, n_head)})"
        )
    n_inner = fields.get("n_inner")
    if n_inner is not None and not _is_positive_int(n_inner):
        problems.append(f"{prefix}n_inner must be a positive integer or None (4 * n_embd), got {n_inner!r}")
    for name in DROPOUTS:
        if name in fields and not (_is_number(fields[name]) and 0.0 <= float(fields[name]) < 1.0):
            problems.append(f"{prefix}{name} must be in [0, 1), got {fields[name]!r}")
    for name in POSITIVE_FLOATS:
        if name in fields and not (_is_number(fields[name]) and float(fields[name]) > 0.0):
            problems.append(f"{prefix}{name} must be > 0, got {fields[name]!r}")
    chunk = fields.get("loss_chunk_size")
    if chunk is not None and not (_is_int(chunk) and chunk >= 0):
        problems.append(f"{prefix}loss_chunk_size must be None or an integer >= 0, got {chunk!r}")
    activation = fields.get("activation_function")
    if "activation_function" in fields and activation not in ACTIVATIONS:
        problems.append(f"{prefix}activation_function={activation!r} is not one of {list(ACTIVATIONS)}")
    return problems


def divisor_near(n: int, target: int) -> int:
    """The divisor of ``n`` closest to ``target`` (for error messages)."""
    return min((d for d in range(1, n + 1) if n % d == 0), key=lambda d: (abs(d - target), d))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_positive_int(value: Any) -> bool:
    return _is_int(value) and value > 0


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)

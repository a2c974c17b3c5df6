"""The validation score: loss per token and bits per byte, summed exactly over the validation windows.

The loss is the mean cross-entropy (nats) over every target token of the windows. Bits per byte divide the nats of
the targets that are text by the UTF-8 bytes of that text (``tokenization.token_byte_lengths``, a table looked up by
id, so it costs nothing per step); special tokens (EOS between documents) are no text and count in neither sum, as
in nanochat's ``evaluate_bpb``. Two runs with different tokenizers compare by bits per byte, not by loss: a token of
a small vocabulary holds fewer bytes.

:func:`score_batches` works for any causal LM that returns logits (stock ``GPT2LMHeadModel`` too), so a benchmark
scores a model trained elsewhere exactly as the loop scores its own.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch

from hf_gpt2.fused_loss import IGNORE_INDEX


@dataclass(frozen=True, kw_only=True)
class ValScores:
    """What one evaluation measured."""

    loss: float
    """Mean cross-entropy in nats per target token (EOS included)."""
    bits_per_byte: float | None
    """Bits per UTF-8 byte of the targets that are text; None without a byte table (not a byte-level tokenizer)."""
    tokens: int
    """Target tokens scored."""
    bytes: int
    """UTF-8 bytes of the targets that are text (0 without a byte table)."""

    @classmethod
    def from_sums(cls, sums: torch.Tensor) -> ValScores:
        """From :func:`score_batches`' ``[nats, tokens, text nats, text bytes]``, summed over processes."""
        nats, tokens, text_nats, text_bytes = (float(x) for x in sums.tolist())
        return cls(
            loss=nats / max(tokens, 1.0),
            bits_per_byte=text_nats / (math.log(2) * text_bytes) if text_bytes > 0 else None,
            tokens=int(tokens),
            bytes=int(text_bytes),
        )


def token_nats(logits: torch.Tensor, targets: torch.Tensor, chunk_rows: int = 256) -> torch.Tensor:
    """Cross-entropy of each target in nats, fp32, (N,); 0 where the target is -100.

    Computed ``chunk_rows`` rows at a time (logsumexp minus the target's logit, in fp32), so the only (N, V) tensor
    is the logits themselves.
    """
    flat, t = logits.reshape(-1, logits.shape[-1]), targets.reshape(-1)  # (N, V), (N,)
    scored = t != IGNORE_INDEX
    safe = torch.where(scored, t, 0).unsqueeze(1)  # (N, 1)
    pieces = []
    for start in range(0, flat.shape[0], chunk_rows):
        rows = flat[start : start + chunk_rows].float()
        pieces.append(torch.logsumexp(rows, dim=-1) - rows.gather(1, safe[start : start + chunk_rows]).squeeze(1))
    return torch.cat(pieces) * scored if pieces else flat.new_zeros(0, dtype=torch.float32)


@torch.no_grad()
def score_batches(
    model: torch.nn.Module,
    batches: Iterable[dict[str, torch.Tensor]],
    byte_lengths: torch.Tensor | None,
    rows_per_forward: int,
) -> torch.Tensor:
    """Sum ``[nats, tokens, text nats, text bytes]`` (float64) over the batches.

    Args:
        model: a causal LM returning ``logits`` aligned with ``targets``; called with the batch's model inputs
            (``input_ids`` and, for SFT, ``attention_mask`` / ``position_ids``) in its current mode.
        batches: dicts with the model inputs and ``targets`` (B, T), -100 where nothing is scored
            (``components.to_model_batch``).
        byte_lengths: (V,) int64 UTF-8 bytes of each token id (0 for special tokens), on the batches' device; None
            leaves the two byte sums at 0.
        rows_per_forward: rows per forward pass, so the (rows, T, V) logits stay small.
    """
    sums = torch.zeros(4, dtype=torch.float64)
    for batch in batches:
        targets = batch["targets"]
        inputs = {key: value for key, value in batch.items() if key != "targets"}
        for start in range(0, targets.shape[0], rows_per_forward):
            rows = slice(start, start + rows_per_forward)
            logits = model(**{k: v[rows] for k, v in inputs.items()}, use_cache=False).logits
            t = targets[rows].reshape(-1)
            nats = token_nats(logits, t).double()
            scored = t != IGNORE_INDEX
            sums[0] += nats.sum().item()
            sums[1] += scored.sum().item()
            if byte_lengths is not None:
                n_bytes = byte_lengths[torch.where(scored, t, 0)] * scored  # (N,)
                sums[2] += nats[n_bytes > 0].sum().item()
                sums[3] += n_bytes.sum().item()
    return sums


def rows_per_forward(block_size: int, device: torch.device) -> int:
    """Rows of ``block_size`` tokens per validation forward: 1024 tokens on CPU (a 206 MB fp32 logits tensor at
    vocabulary 50257; smaller forwards are slower there), 16384 on GPUs."""
    tokens = 1024 if device.type == "cpu" else 16384
    return max(1, tokens // block_size)

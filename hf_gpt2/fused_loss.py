"""The chunked LM-head cross-entropy: transformers' causal-LM loss of ``hidden @ weight.T`` without the logits.

A kernel, not the model: ``modeling_hf_gpt2`` calls it when a caller asks for the loss without logits
(``skip_logits=True``). It travels to the Hub with every release (``trust_remote_code``) and imports only torch.

Liger / "cut cross-entropy" style: each chunk of rows gets its logits, its loss and, in the same forward, its share
of the gradients wrt ``hidden`` and ``weight``; then the chunk's logits are dropped. Neither pass ever holds more
than ``chunk_size × V`` logits, and the backward only scales the two stored gradients.

The weight has exactly ``V`` rows (the vocabulary). Only the chunk's logits buffer is wider: its rows are
``V`` rounded up to ``pad_multiple`` columns, the extra columns held at -inf. The GEMMs then write and read matrices
with an aligned leading dimension, which is where the speed of a padded vocabulary comes from (on the 2-core CPU the
chunk GEMM takes 104 ms at a 50304-wide buffer against 160 ms at 50257), while the weight, its gradient and every
logit a caller sees keep ``V`` columns.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100


class LinearCrossEntropy(torch.autograd.Function):
    """Summed cross-entropy of ``hidden @ weight.T`` against ``targets``, one chunk of rows at a time."""

    @staticmethod
    def forward(
        ctx,
        hidden: torch.Tensor,
        weight: torch.Tensor,
        targets: torch.Tensor,
        denominator: torch.Tensor,
        chunk_size: int,
        buffer_width: int,
        compute_dtype: torch.dtype,
    ) -> torch.Tensor:
        # hidden (N, C), weight (V, C), targets (N,) with -100 = ignored. The gradients are kept as sums over the
        # valid rows; backward applies grad_loss / denominator to them in one pass.
        need_hidden, need_weight = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        h, w = hidden.to(compute_dtype), weight.to(compute_dtype)  # no-ops in fp32; autocast's casts under bf16
        V = w.shape[0]
        valid = targets != IGNORE_INDEX
        safe_targets = torch.where(valid, targets, 0).unsqueeze(1)  # (N, 1)
        keep = valid.unsqueeze(1).to(compute_dtype)  # (N, 1): 1 for rows that count, 0 for ignored ones (exact)
        grad_hidden = torch.empty_like(h) if need_hidden else None
        grad_weight = torch.empty_like(weight, dtype=torch.float32) if need_weight else None
        loss = torch.zeros((), dtype=torch.float32, device=hidden.device)
        buffers = _ChunkBuffers(min(chunk_size, h.shape[0]), V, buffer_width, compute_dtype, h.device)
        with torch.autocast(hidden.device.type, enabled=False):
            for start in range(0, h.shape[0], chunk_size):
                rows = slice(start, start + chunk_size)
                h_rows, keep_rows, t_rows = h[rows], keep[rows], safe_targets[rows]
                log_probs = buffers.log_probs(h_rows, w)  # (m, Vp), fp32; columns V.. are -inf
                loss -= (log_probs.gather(1, t_rows) * keep_rows).sum()
                if grad_hidden is None and grad_weight is None:
                    continue
                ones = torch.ones_like(log_probs[:, :1])
                grad_logits = log_probs.exp_().scatter_add_(1, t_rows, -ones).to(compute_dtype)  # p - onehot
                grad_logits = grad_logits[:, :V]  # (m, V), a view with ld = Vp
                # the row mask goes on the small (m, C) factors, never over the (m, V) matrix
                if grad_hidden is not None:
                    grad_hidden[rows] = (grad_logits @ w).mul_(keep_rows)
                if grad_weight is not None:
                    _accumulate_weight_grad(grad_weight, grad_logits, h_rows * keep_rows, first=start == 0)
        # ctx attributes, not save_for_backward: backward drops them, so autograd can adopt the (V, C) gradient as
        # weight.grad instead of copying it
        ctx.grad_hidden = grad_hidden.to(hidden.dtype) if grad_hidden is not None else None
        ctx.grad_weight = grad_weight.to(weight.dtype) if grad_weight is not None else None
        ctx.save_for_backward(denominator)
        return loss / denominator

    @staticmethod
    def backward(ctx, grad_loss: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        (denominator,) = ctx.saved_tensors
        grad_hidden, grad_weight = ctx.grad_hidden, ctx.grad_weight
        if grad_hidden is None and grad_weight is None and any(ctx.needs_input_grad[:2]):
            raise RuntimeError("LinearCrossEntropy: backward through the same loss twice is not supported")
        ctx.grad_hidden = ctx.grad_weight = None
        factor = grad_loss / denominator
        if grad_hidden is not None:
            grad_hidden = grad_hidden * factor.to(grad_hidden.dtype)
        if grad_weight is not None:
            grad_weight = grad_weight.mul_(factor)  # in place: no second (V, C) buffer
        return grad_hidden, grad_weight, None, None, None, None, None


class _ChunkBuffers:
    """The (n, Vp) logits buffer every chunk reuses; its columns V.. hold -inf, so they never score and get p = 0."""

    def __init__(self, n: int, V: int, width: int, dtype: torch.dtype, device: torch.device) -> None:
        self.V = V
        self.compiled = torch.compiler.is_compiling()  # the compiler plans its own buffers (and no strided out=)
        if self.compiled:
            return
        self.logits = torch.empty(n, width, dtype=dtype, device=device)
        self.logits[:, V:] = float("-inf")
        # CPU: log-softmax in place (bit-identical there, and one (n, Vp) buffer less); elsewhere a second buffer
        self.in_place = dtype == torch.float32 and device.type == "cpu"
        self.probs = self.logits if self.in_place else torch.empty_like(self.logits, dtype=torch.float32)

    def log_probs(self, h_rows: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """fp32 log-softmax of ``h_rows @ w.T``, (m, Vp); the caller may overwrite it (exp_) before the next chunk."""
        if self.compiled:
            return torch.log_softmax(torch.mm(h_rows, w.t()), dim=-1, dtype=torch.float32)
        m = len(h_rows)
        if self.in_place:
            self.logits[:m, self.V :] = float("-inf")  # a previous chunk's exp_ turned them into 0
        torch.mm(h_rows, w.t(), out=self.logits[:m, : self.V])  # written through the strided view: ld = Vp
        # one row-wise kernel: each row is read once and its softmax sums stay in cache
        return torch.log_softmax(self.logits[:m], dim=-1, dtype=torch.float32, out=self.probs[:m])


def _accumulate_weight_grad(
    grad_weight: torch.Tensor, grad_logits: torch.Tensor, hidden_rows: torch.Tensor, first: bool
) -> None:
    """grad_weight (V, C, fp32) += grad_logitsᵀ (V, m) @ hidden_rows (m, C); the first chunk overwrites it."""
    if grad_logits.dtype == torch.float32:
        if first:  # the first chunk writes the buffer: no zero fill
            torch.mm(grad_logits.t(), hidden_rows, out=grad_weight)
        else:
            grad_weight.addmm_(grad_logits.t(), hidden_rows)
    elif first:
        grad_weight.copy_(grad_logits.t() @ hidden_rows)
    else:  # bf16 / fp16 chunk product, accumulated in fp32
        grad_weight.add_(grad_logits.t() @ hidden_rows)


def default_chunk_size(device: torch.device) -> int:
    """Rows per chunk: 256 on CPU (a 51 MB chunk at V=50257, near the caches, fastest on 2 cores); 4096 on GPUs."""
    return 256 if device.type == "cpu" else 4096


def linear_cross_entropy(
    hidden_states: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor | None = None,
    *,
    shift_labels: torch.Tensor | None = None,
    num_items_in_batch: torch.Tensor | int | None = None,
    chunk_size: int | None = None,
    pad_multiple: int = 128,
) -> torch.Tensor:
    """transformers' ``ForCausalLMLoss`` of ``hidden_states @ weight.T``, without building the (B, T, V) logits.

    Args:
        hidden_states: (B, T, C) final hidden states.
        weight: (V, C) LM head.
        labels: (B, T) ids aligned with the inputs (shifted here, as transformers does); -100 is ignored.
        shift_labels: (B, T) already-shifted targets; replaces ``labels``.
        num_items_in_batch: divide the summed loss by this (gradient accumulation) instead of the valid-token count.
        chunk_size: rows (tokens) per chunk; None picks :func:`default_chunk_size`.
        pad_multiple: the chunk's logits buffer is ``V`` rounded up to a multiple of this wide (aligned GEMMs).

    Returns:
        The mean loss over the valid tokens (or the sum over ``num_items_in_batch``), fp32.
    """
    if shift_labels is None:
        if labels is None:
            raise ValueError("linear_cross_entropy needs labels or shift_labels")
        shift_labels = F.pad(labels, (0, 1), value=IGNORE_INDEX)[..., 1:]  # (B, T): position t predicts t + 1
    targets = shift_labels.reshape(-1).to(hidden_states.device)  # (N,)
    hidden = hidden_states.reshape(-1, hidden_states.shape[-1])  # (N, C), a view when contiguous
    if num_items_in_batch is None:
        denominator = (targets != IGNORE_INDEX).sum().float()
    else:
        denominator = torch.as_tensor(num_items_in_batch, device=hidden.device).float()
    device_type = hidden.device.type
    autocast = torch.is_autocast_enabled(device_type)
    compute_dtype = torch.get_autocast_dtype(device_type) if autocast else hidden.dtype
    chunk = chunk_size or default_chunk_size(hidden.device)
    width = -(-weight.shape[0] // pad_multiple) * pad_multiple
    return LinearCrossEntropy.apply(hidden, weight, targets, denominator, chunk, width, compute_dtype)

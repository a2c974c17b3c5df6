"""Throughput, model FLOPs utilisation (MFU) from a per-GPU peak table, and memory use."""

from __future__ import annotations

import platform
import resource
import sys

import torch

# Dense (no sparsity) peak tensor throughput in TFLOP/s: (bf16/fp16, tf32), from the vendors' data sheets.
# Matched in order against the upper-cased device name, so the more specific names come first.
PEAK_TFLOPS: list[tuple[str, float, float]] = [
    ("GB200", 2500.0, 1250.0),
    ("B200", 2250.0, 1100.0),
    ("B100", 1750.0, 875.0),
    ("H200", 989.4, 494.7),
    ("GH200", 989.4, 494.7),
    ("H100 NVL", 835.0, 417.5),
    ("H100 PCIE", 756.0, 378.0),
    ("H100", 989.4, 494.7),
    ("H800", 989.4, 494.7),
    ("A100", 312.0, 156.0),
    ("A800", 312.0, 156.0),
    ("A10G", 70.0, 35.0),
    ("A10", 125.0, 62.5),
    ("A30", 165.0, 82.0),
    ("A40", 149.7, 74.8),
    ("L40S", 362.1, 183.0),
    ("L40", 181.0, 90.5),
    ("L4", 121.0, 60.0),
    ("RTX 6000 ADA", 364.2, 182.1),
    ("A6000", 154.8, 77.4),
    ("5090", 209.5, 104.8),
    ("4090", 165.2, 82.6),
    ("3090", 71.0, 35.6),
    ("V100", 125.0, 15.7),
    ("T4", 65.0, 8.1),
    ("MI300X", 1307.4, 653.7),
    ("MI250X", 383.0, 95.7),
]


def peak_flops(device_name: str, mixed_precision: str) -> float | None:
    """Return the device's dense peak FLOP/s for the run's precision, or None when it is unknown (e.g. a CPU).

    Args:
        device_name: ``torch.cuda.get_device_name()``, e.g. ``"NVIDIA H100 80GB HBM3"``.
        mixed_precision: accelerate's ``mixed_precision`` ("no", "fp16", "bf16", "fp8"); "no" uses the TF32 peak.
    """
    name = device_name.upper()
    for key, half, tf32 in PEAK_TFLOPS:
        if key in name:
            return (tf32 if mixed_precision == "no" else half) * 1e12
    return None


def device_peak_flops(device: torch.device, mixed_precision: str) -> float | None:
    """:func:`peak_flops` for a torch device; None on CPU and on GPUs missing from :data:`PEAK_TFLOPS`."""
    if device.type != "cuda":
        return None
    return peak_flops(torch.cuda.get_device_name(device), mixed_precision)


def flops_per_token(n_params: int, n_layer: int, n_embd: int, seq_len: int) -> float:
    """Training FLOPs per token (forward + backward), PaLM appendix B: ``6·N + 12·L·H·Q·T``.

    Args:
        n_params: parameters excluding the position embeddings (:func:`count_flop_params`); the tied LM head is a
            real matmul, so the token embedding counts once.
        n_layer: transformer blocks (L); n_embd: heads × head size (H·Q); seq_len: the training context (T).

    GPT-2 124M at T=1024 gives about 855 MFLOP per token.
    """
    return 6.0 * n_params + 12.0 * n_layer * n_embd * seq_len


def count_flop_params(model: torch.nn.Module) -> int:
    """Parameters that cost matmul FLOPs: all of them (tied ones once) except the position embedding table."""
    total = sum(p.numel() for p in model.parameters())
    for name, param in model.named_parameters():
        if name.endswith("wpe.weight"):
            total -= param.numel()
    return total


def memory_gb(device: torch.device) -> float:
    """Peak memory in GB: allocated CUDA memory on a GPU, the process's peak resident set on a CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 1e9
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 1e9 if sys.platform == "darwin" else rss * 1024 / 1e9  # bytes on macOS, KiB on Linux


def device_name(device: torch.device) -> str:
    """A readable name of the training device, e.g. ``NVIDIA H100 80GB HBM3`` or ``cpu (x86_64)``."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{device.type} ({platform.machine()})"

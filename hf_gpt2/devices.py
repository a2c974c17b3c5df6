"""The device a command runs on: ``--device`` checked against what this machine has, never silently replaced.

Without ``--device`` a command uses the first CUDA GPU when torch sees one, else the CPU (and says which). A device
that is asked for and missing (``cuda`` on a machine or a torch build without CUDA, ``cuda:3`` with two GPUs,
``mps`` off Apple silicon) is a :class:`DeviceError` naming it and what is there: the run does not move to the CPU
behind the user's back.
"""

from __future__ import annotations

import torch

from hf_gpt2.errors import HfGPT2Error

DEVICE_TYPES = ("cpu", "cuda", "mps", "xpu")
"""The device types a command accepts (``cuda`` and ``xpu`` take an index, e.g. ``cuda:1``)."""


class DeviceError(HfGPT2Error):
    """The device asked for does not exist on this machine."""


def default_device() -> torch.device:
    """``cuda`` when torch sees a GPU, else ``cpu``."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_device(spec: str | torch.device | None, setting: str = "--device") -> torch.device:
    """Return the device ``spec`` names once it is known to exist here; None gives :func:`default_device`.

    Args:
        spec: ``cpu``, ``cuda``, ``cuda:1``, ``mps``, ``xpu:0`` or a ``torch.device``.
        setting: how the message names where ``spec`` came from.

    Raises:
        DeviceError: the spec is not a device, or that device is not available here (with what is).
    """
    if spec is None:
        return default_device()
    try:
        device = torch.device(spec)
    except (RuntimeError, TypeError):
        raise DeviceError(
            f"{setting} {spec!r} is not a device; use {', '.join(DEVICE_TYPES)} or cuda:N (N = the GPU's index)"
        ) from None
    if device.type not in DEVICE_TYPES:
        raise DeviceError(f"{setting} {spec!r}: hf_gpt2 runs on {', '.join(DEVICE_TYPES)}, not {device.type}")
    available, count, why = _availability(device.type)
    if not available:
        raise DeviceError(f"{setting} {spec}: {why}; use {setting} cpu, or leave {setting} out")
    if device.index is not None and device.index >= count:
        raise DeviceError(
            f"{setting} {spec}: this machine has {count} {device.type} device(s), "
            f"{device.type}:0 to {device.type}:{count - 1}"
        )
    return device


def _availability(kind: str) -> tuple[bool, int, str]:
    """(available, number of devices, why not) for a device type."""
    if kind == "cpu":
        return True, 1, ""
    if kind == "cuda":
        if torch.version.cuda is None:
            return False, 0, f"CUDA is not available on this machine (torch {torch.__version__} is built without it)"
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        return (
            count > 0,
            count,
            "CUDA is not available on this machine (torch sees no GPU: check the driver and CUDA_VISIBLE_DEVICES)",
        )
    if kind == "mps":
        available = torch.backends.mps.is_available()
        return available, int(available), "MPS is not available on this machine (it needs Apple silicon, macOS 12.3+)"
    available = hasattr(torch, "xpu") and torch.xpu.is_available()
    count = torch.xpu.device_count() if available else 0
    return available, count, "no Intel XPU is available on this machine"

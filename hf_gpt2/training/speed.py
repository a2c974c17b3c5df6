"""The GPU fast path for the training loop: backend flags, torch.compile, and a prefetching device loader.

Each helper is safe on CPU: ``configure_backends`` only touches CUDA flags, ``compile_model`` compiles in place
(no ``_orig_mod.`` wrapper, so ``state_dict`` and ``save_pretrained`` keep the plain names), and ``PrefetchLoader``
passes batches through unchanged when the device is not CUDA.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import Any

import torch

logger = logging.getLogger(__name__)

Batch = Any  # a tensor, or a dict / list / tuple of tensors (what the data loaders yield)


def configure_backends() -> dict[str, bool]:
    """Turn on the fast CUDA math: TF32 matmuls and convolutions, and the flash / memory-efficient SDPA kernels.

    Call once, before building the model. A no-op on machines without CUDA (CPU float32 stays exact).

    Returns:
        The flags that were set, for the run log.
    """
    if not torch.cuda.is_available():
        return {}
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cuda.enable_flash_sdp(True)
    torch.backends.cuda.enable_mem_efficient_sdp(True)
    flags = {"tf32": True, "flash_sdp": torch.backends.cuda.flash_sdp_enabled()}
    logger.info("CUDA backends: %s", flags)
    return flags


def compile_model(model: torch.nn.Module, **compile_kwargs: Any) -> torch.nn.Module:
    """Compile ``model``'s forward (and with it the chunked LM-head + loss) in place, and return the same object.

    ``nn.Module.compile`` keeps the module itself, so parameter names, ``state_dict``, ``save_pretrained`` and
    ``accelerator.unwrap_model`` see no ``_orig_mod.`` prefix, and the gradients of several micro-batches
    accumulate in the same ``.grad`` tensors as without compilation. Call it before ``accelerator.prepare``.

    Args:
        model: the model to compile.
        **compile_kwargs: passed to ``torch.compile`` (e.g. ``mode="max-autotune"``); ``dynamic=False`` by default,
            so a last batch of another shape triggers one recompile instead of a dynamic-shape graph.

    Returns:
        ``model`` itself.
    """
    compile_kwargs.setdefault("dynamic", False)
    model.compile(**compile_kwargs)
    return model


def _to_device(batch: Batch, device: torch.device, pin: bool) -> Batch:
    if isinstance(batch, torch.Tensor):
        if pin and not batch.is_pinned():
            batch = batch.pin_memory()
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {key: _to_device(value, device, pin) for key, value in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(value, device, pin) for value in batch)
    return batch


def _record_stream(batch: Batch, stream: torch.cuda.Stream) -> None:
    """Tell the caching allocator that ``stream`` uses these tensors (they were allocated on the copy stream)."""
    if isinstance(batch, torch.Tensor):
        batch.record_stream(stream)
    elif isinstance(batch, dict):
        for value in batch.values():
            _record_stream(value, stream)
    elif isinstance(batch, (list, tuple)):
        for value in batch:
            _record_stream(value, stream)


class PrefetchLoader:
    """Wrap a batch iterable so that the next batch is pinned and copied to the GPU while the current one trains.

    On CUDA the host→device copy of batch n+1 runs on a side stream (pinned memory, ``non_blocking=True``) while
    the model works on batch n. On any other device it is a passthrough: batches come out as the loader yields them.

    ``state_dict()`` / ``load_state_dict()`` forward to the wrapped loader (e.g. ``TokenWindowLoader``). The state
    saved is the one from *before* the batch that was prefetched but not yet handed out, so a resume replays
    exactly the batches the loop has not seen.

    Args:
        loader: any iterable of batches (tensors or dicts / lists / tuples of tensors).
        device: where batches go; defaults to the current CUDA device if there is one, else the CPU.
    """

    def __init__(self, loader: Iterable[Batch], device: torch.device | str | None = None) -> None:
        self.loader = loader
        if device is None:
            device = torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self.enabled = self.device.type == "cuda"
        self._pending_state: dict | None = None

    def __iter__(self) -> Iterator[Batch]:
        if not self.enabled:
            yield from self.loader
            return
        stream = torch.cuda.Stream(self.device)
        source = iter(self.loader)
        upcoming = self._prefetch(source, stream)
        while upcoming is not None:
            torch.cuda.current_stream(self.device).wait_stream(stream)
            batch = upcoming
            _record_stream(batch, torch.cuda.current_stream(self.device))
            upcoming = self._prefetch(source, stream)
            yield batch
        self._pending_state = None

    def _prefetch(self, source: Iterator[Batch], stream: torch.cuda.Stream) -> Batch | None:
        state = self._loader_state()
        try:
            batch = next(source)
        except StopIteration:
            return None
        self._pending_state = state
        with torch.cuda.stream(stream):
            return _to_device(batch, self.device, pin=True)

    def _loader_state(self) -> dict | None:
        state_dict = getattr(self.loader, "state_dict", None)
        return state_dict() if callable(state_dict) else None

    def __len__(self) -> int:
        return len(self.loader)  # type: ignore[arg-type]

    def state_dict(self) -> dict:
        """The wrapped loader's position, counting the prefetched batch as not yet consumed."""
        if self.enabled and self._pending_state is not None:
            return self._pending_state
        return self.loader.state_dict()  # type: ignore[attr-defined]

    def load_state_dict(self, state: dict) -> None:
        """Restore the wrapped loader's position (call before iterating)."""
        self._pending_state = None
        self.loader.load_state_dict(state)  # type: ignore[attr-defined]

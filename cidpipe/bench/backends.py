"""Backends for the local bench: torch eager / torch.compile, plus the runtime's ORT and TensorRT ones.

Every backend has ``run(x: np.ndarray) -> np.ndarray`` logits, ``name``, ``provider``, ``threads``,
``sync`` (None or a callable the latency protocol calls before reading the clock) and
``peak_memory_bytes()``. ORT and TensorRT are the very classes shipped to devices (cidpipe_runtime).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import numpy as np
import torch
from cidpipe_runtime.memory import peak_rss_bytes
from cidpipe_runtime.ort_backend import OrtBackend
from torch import nn

from cidpipe.errors import DeviceError


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Pin torch's intra-op threads for a measurement and restore the caller's setting after."""
    previous = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


class TorchBackend:
    """Eager (or torch.compile'd) inference of an ``nn.Module`` from numpy input to numpy logits."""

    name = "torch"

    def __init__(
        self, module: nn.Module, device: str = "cpu", threads: int = 1, compile: bool = False
    ) -> None:
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise DeviceError("device 'cuda' was requested but torch sees no CUDA GPU; use device='cpu'")
        self.module = module.to(self.device).eval()
        # torch.compile is lazy: it compiles on the first call (accuracy pass / warm-up), never while timed.
        self.runner: Callable[[torch.Tensor], torch.Tensor] = (
            torch.compile(self.module) if compile else self.module
        )
        self.compiled = bool(compile)
        self.threads = int(threads)
        self.provider = f"{'compile' if compile else 'eager'}-{self.device.type}"
        self.sync: Callable[[], None] | None = torch.cuda.synchronize if self.device.type == "cuda" else None
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)

    def run(self, x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            logits = self.runner(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(self.device))
        return logits.float().cpu().numpy()

    def peak_memory_bytes(self) -> int:
        if self.device.type == "cuda":
            return int(torch.cuda.max_memory_allocated(self.device))
        return peak_rss_bytes()


class RuntimeBackend:
    """Adapter giving the cidpipe_runtime backends the same small interface as TorchBackend."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.name = inner.name  # type: ignore[attr-defined]
        self.provider = inner.provider  # type: ignore[attr-defined]
        self.threads = getattr(inner, "threads", 1)
        self.sync = None  # both runtime backends return host arrays, i.e. they are already synchronised

    def run(self, x: np.ndarray) -> np.ndarray:
        return self.inner.run(x)  # type: ignore[attr-defined]

    def peak_memory_bytes(self) -> int:
        return peak_rss_bytes()


def open_ort(path: str, provider: str, threads: int) -> RuntimeBackend:
    return RuntimeBackend(OrtBackend(path, provider=provider, threads=threads))


def open_tensorrt(path: str) -> RuntimeBackend:
    from cidpipe_runtime.trt_backend import TrtBackend  # imports tensorrt lazily itself

    return RuntimeBackend(TrtBackend(path))

"""Benchmark artifacts on this machine: accuracy once per artifact, latency per batch size.

An artifact that cannot be opened becomes a ``failed`` row with its one-line error and the bench goes
on with the next one; see cidpipe/bench/result.py for the status definitions.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np
from cidpipe_runtime.accuracy import accuracy_of, tile_to_batch
from cidpipe_runtime.errors import RuntimeFailure
from cidpipe_runtime.host import host_facts
from cidpipe_runtime.latency import is_noisy, measure_latency
from cidpipe_runtime.memory import PeakMemory

from cidpipe.bench.backends import TorchBackend, open_ort, open_tensorrt, torch_threads
from cidpipe.bench.config import BenchConfig
from cidpipe.bench.result import ArtifactSpec, BenchResult, backend_for_format
from cidpipe.errors import CidpipeError, ModelError


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if isinstance(err, (CidpipeError, RuntimeFailure)) else f"{type(err).__name__}: {text}"


def class_breakdown(accuracy: dict[str, Any]) -> dict[str, Any]:
    """Per-class top-1 and the confusion matrix of an accuracy pass, when it measured them."""
    return {key: accuracy[key] for key in ("per_class_top1", "confusion") if accuracy.get(key) is not None}


def arithmetic(accuracy: dict[str, Any]) -> dict[str, Any]:
    """``accuracy_arithmetic`` when the accuracy came from another arithmetic than the timed session's."""
    label = accuracy.get("arithmetic")
    return {"accuracy_arithmetic": label} if label else {}


def _size_bytes(spec: ArtifactSpec) -> int | None:
    if spec.path is not None and os.path.isfile(spec.path):
        return os.path.getsize(spec.path)
    if spec.module is not None:  # in-memory: the bytes of its parameters and buffers
        tensors = list(spec.module.parameters()) + list(spec.module.buffers())
        return int(sum(t.numel() * t.element_size() for t in tensors))
    return None


def _open(spec: ArtifactSpec, backend: str, cfg: BenchConfig, device: str, compile: bool) -> Any:
    if backend == "torch":
        if spec.module is None:
            raise ModelError(f"artifact {spec.name} has format {spec.format} but no in-memory module")
        return TorchBackend(spec.module, device=device, threads=cfg.threads, compile=compile)
    if spec.path is None:
        raise ModelError(f"artifact {spec.name} has no file path")
    if backend == "onnxruntime":
        return open_ort(str(spec.path), cfg.ort_provider, cfg.threads)
    if backend == "tensorrt":
        return open_tensorrt(str(spec.path))
    raise ModelError(f"unknown backend {backend!r} for {spec.name}; expected torch, onnxruntime or tensorrt")


def _host(backend: Any) -> dict[str, Any]:
    if backend.name == "torch":
        import torch

        return host_facts(torch=torch.__version__)
    return host_facts(**{backend.name: getattr(getattr(backend, "inner", None), "library_version", None)})


def _bench_one(
    spec: ArtifactSpec,
    eval_x: np.ndarray,
    eval_y: np.ndarray,
    ref_pred: np.ndarray | None,
    cfg: BenchConfig,
    device: str,
    compile: bool = False,
) -> list[BenchResult]:
    backend_name = spec.backend or backend_for_format(spec.format)
    fmt = f"{spec.format}+compile" if compile else spec.format
    base = {"artifact": spec.name, "format": fmt, "backend": backend_name, "device": "local",
            "role": spec.role, "variant": spec.variant}
    size = _size_bytes(spec)
    memory = PeakMemory().start()  # from before the artifact is loaded: its session/weights count too
    try:
        backend = _open(spec, backend_name, cfg, device, compile)
    except Exception as err:  # any load failure is this artifact's row, never the whole bench
        return [
            BenchResult(
                **base,
                provider=None,
                batch_size=bs,
                status="failed",
                error=_one_line(err),
                size_bytes=size,
                threads=cfg.threads,
            )
            for bs in cfg.batch_sizes
        ]
    common = {**base, "provider": backend.provider, "size_bytes": size, "threads": backend.threads,
              "host": _host(backend)}
    status, error, accuracy = "pass", None, {}
    try:
        # A runtime backend is judged on the arithmetic its artifact is deployed with (see accuracy_of).
        judged = getattr(backend, "inner", backend)
        accuracy = accuracy_of(judged, eval_x, eval_y, cfg.batch_sizes[0], ref_pred)
        if not np.isfinite(backend.run(tile_to_batch(eval_x, 1))).all():
            status, error = "exported-but-failed", "non-finite logits"
        elif (accuracy.get("agreement") is not None and accuracy["agreement"] < cfg.min_agreement
              and not spec.retrained):
            status = "exported-but-failed"
            error = (
                f"top-1 agreement {accuracy['agreement']:.1f}% with the FP32 PyTorch model is below "
                f"{cfg.min_agreement:.1f}%"
            )
    except Exception as err:
        return [
            BenchResult(**common, batch_size=bs, status="exported-but-failed", error=_one_line(err))
            for bs in cfg.batch_sizes
        ]
    results = []
    for batch_size in cfg.batch_sizes:
        batch = tile_to_batch(eval_x, batch_size)
        row = BenchResult(
            **common,
            batch_size=batch_size,
            status=status,
            error=error,
            top1=accuracy.get("top1"),
            top5=accuracy.get("top5"),
            agreement=accuracy.get("agreement"),
            extra={"eval_samples": accuracy.get("n"), **class_breakdown(accuracy), **arithmetic(accuracy),
                   **({"retrained": "qat"} if spec.retrained else {})},
        )
        try:
            stats = measure_latency(
                lambda batch=batch: backend.run(batch),
                warmup_runs=cfg.warmup_runs,
                warmup_seconds=cfg.warmup_seconds,
                runs=cfg.runs,
                min_seconds=cfg.min_seconds,
                sync=backend.sync,
            )
        except Exception as err:
            row.status, row.error = "exported-but-failed", _one_line(err)
        else:
            row.latency = stats
            row.throughput_ips = batch_size * 1000.0 / stats["mean_ms"] if stats["mean_ms"] > 0 else None
            row.noisy = is_noisy(stats, cfg.cov_warning)
        row.peak_mem_bytes, row.extra["peak_mem"] = _peak_memory(backend, memory)
        results.append(row)
    return results


def _peak_memory(backend: Any, memory: PeakMemory) -> tuple[int, dict[str, Any]]:
    """(peak bytes, what they cover): the CUDA allocator's peak on a GPU, else this process's RSS peak
    since the artifact was opened (scope ``artifact``; ``process`` where the OS cannot reset the peak)."""
    if getattr(backend, "device", None) is not None and backend.device.type == "cuda":
        return backend.peak_memory_bytes(), {"scope": "artifact", "kind": "cuda-allocator"}
    return memory.peak_bytes(), {**memory.describe(), "kind": "rss"}


def bench_local(
    artifacts: list[ArtifactSpec],
    eval_x: np.ndarray,
    eval_y: np.ndarray,
    ref_pred: np.ndarray | None,
    cfg: BenchConfig,
    device: str = "cpu",
    announce: Callable[[str], None] | None = None,
) -> list[BenchResult]:
    """One BenchResult per (artifact, batch size), in input order; ``announce`` is told each measurement
    as it starts (a large model's accuracy pass and timed runs take minutes: the user sees which one).

    ``device`` is where the torch artifacts run ("cpu" | "cuda"); artifacts whose backend is not in
    ``cfg.backends`` are skipped. With ``cfg.torch_compile`` a torch artifact gets a second set of rows,
    format ``<format>+compile``, compiled on its first call (the accuracy pass), never in a
    timed region. torch's thread count is pinned to
    ``cfg.threads`` for the whole bench and restored afterwards.
    """
    if cfg.max_eval_samples is not None:
        eval_x, eval_y = eval_x[: cfg.max_eval_samples], eval_y[: cfg.max_eval_samples]
        ref_pred = None if ref_pred is None else ref_pred[: cfg.max_eval_samples]
    results: list[BenchResult] = []
    with torch_threads(cfg.threads):
        for spec in artifacts:
            backend_name = spec.backend or backend_for_format(spec.format)
            if backend_name not in cfg.backends:
                continue
            compiles = (False, True) if backend_name == "torch" and cfg.torch_compile else (False,)
            for compile in compiles:
                if announce is not None:
                    extras = ([] if backend_name in spec.name else [backend_name]) + ["compiled"] * compile
                    label = spec.name + (f" ({', '.join(extras)})" if extras else "")
                    announce(f"{label}: top-1 on {len(eval_y)} test images, then latency at batch "
                             f"{', '.join(map(str, cfg.batch_sizes))}")
                results.extend(_bench_one(spec, eval_x, eval_y, ref_pred, cfg, device, compile=compile))
    return results

"""Run an ONNX file in onnxruntime in batches: shared by parity checks, quantization and benchmarks."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cidpipe.errors import ModelError, UsageError


def make_session(
    path: Path,
    *,
    providers: Sequence[str] = ("CPUExecutionProvider",),
    threads: int | None = None,
    optimization: str = "all",
):
    """An ``onnxruntime.InferenceSession``; ``optimization`` is disabled|basic|extended|all."""
    import onnxruntime as ort

    levels = {
        "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }
    if optimization not in levels:
        raise UsageError(
            f"unknown onnxruntime optimization level {optimization!r}; choose one of {list(levels)}"
        )
    opts = ort.SessionOptions()
    opts.graph_optimization_level = levels[optimization]
    if threads is not None:
        opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
    missing = [p for p in providers if p not in ort.get_available_providers()]
    if missing:
        raise UsageError(f"onnxruntime here lacks {missing}; available: {ort.get_available_providers()}")
    try:
        return ort.InferenceSession(str(path), opts, providers=list(providers))
    except Exception as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelError(f"onnxruntime cannot load {path}: {first}") from err


def run_onnx(session, x: np.ndarray, *, batch_size: int = 64) -> np.ndarray:
    """Outputs of the first graph output for all of ``x``, run ``batch_size`` rows at a time.

    A model exported with a fixed batch runs row groups of that size, the last one zero-padded.
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    meta = session.get_inputs()[0]
    fixed = meta.shape[0] if isinstance(meta.shape[0], int) and meta.shape[0] > 0 else None
    step = fixed or batch_size
    outputs = []
    for start in range(0, len(x), step):
        chunk = x[start : start + step]
        n = len(chunk)
        if fixed and n < fixed:
            chunk = np.concatenate([chunk, np.zeros((fixed - n, *chunk.shape[1:]), np.float32)])
        (out,) = session.run([session.get_outputs()[0].name], {meta.name: chunk})
        outputs.append(np.asarray(out)[:n])
    if not outputs:
        raise UsageError("no input rows to run the model on")
    return np.concatenate(outputs).astype(np.float32, copy=False)


def top1_percent(logits: np.ndarray, labels: np.ndarray) -> float:
    return float((logits.argmax(1) == np.asarray(labels)).mean() * 100.0)

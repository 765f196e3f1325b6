"""``python -m cidpipe_runtime``: accuracy + latency of one artifact, printed as ONE JSON document.

On any failure the only stdout line is ``{"error": "..."}`` and the exit code is 2; a traceback is
printed (to stderr) only with CIDPIPE_DEBUG=1. The JSON schema is in cidpipe_runtime/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from typing import Any

import numpy as np

from cidpipe_runtime import __version__
from cidpipe_runtime.accuracy import accuracy_of, tile_to_batch
from cidpipe_runtime.errors import InputError, RuntimeFailure
from cidpipe_runtime.host import host_facts
from cidpipe_runtime.latency import high_cov_warning, measure_latency
from cidpipe_runtime.memory import peak_rss_bytes

BACKENDS = ("onnxruntime", "tensorrt")


class _ArgumentError(RuntimeFailure):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        # argparse would print usage to stderr and exit; the contract is one JSON line on stdout.
        raise _ArgumentError(f"bad arguments: {message}; run with --help for usage")


def _batch_sizes(text: str) -> list[int]:
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of integers: {text!r}") from err
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"batch sizes must be positive integers: {text!r}")
    return sizes


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m cidpipe_runtime", description=__doc__)
    parser.add_argument("--model", required=True, help="ONNX model or TensorRT engine")
    parser.add_argument(
        "--data", required=True, help="npz with x (float32 NCHW), y (int64), optional ref_pred (int64)"
    )
    parser.add_argument("--backend", required=True, choices=BACKENDS)
    parser.add_argument("--provider", default="CPUExecutionProvider", help="ONNX Runtime execution provider")
    parser.add_argument("--batch-sizes", type=_batch_sizes, default=[1])
    parser.add_argument("--warmup-runs", type=int, default=10)
    parser.add_argument("--warmup-seconds", type=float, default=0.2)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--min-seconds", type=float, default=0.5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-samples", type=int, default=None)
    parser.add_argument("--cov-warning", type=float, default=0.1)
    return parser


def load_eval_npz(path: str, max_samples: int | None = None) -> dict[str, np.ndarray]:
    """x/y (and ref_pred when present) from an npz, validated; never unpickles objects."""
    if not os.path.isfile(path):
        raise InputError(f"evaluation data not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except Exception as err:  # zipfile/ValueError/OSError variants for a corrupt file
        raise InputError(f"cannot read evaluation npz {path}: {err}") from err
    missing = [key for key in ("x", "y") if key not in arrays]
    if missing:
        raise InputError(f"{path} lacks key(s) {', '.join(missing)}; it needs x (float32 NCHW) and y (int64)")
    x, y = arrays["x"].astype(np.float32, copy=False), arrays["y"].astype(np.int64, copy=False)
    if x.ndim != 4 or len(x) != len(y) or len(x) == 0:
        raise InputError(
            f"{path}: x must be non-empty NCHW with one label per sample (x {x.shape}, y {y.shape})"
        )
    data = {"x": x, "y": y}
    if "ref_pred" in arrays:
        data["ref_pred"] = arrays["ref_pred"].astype(np.int64, copy=False)
    if max_samples is not None:
        data = {key: value[:max_samples] for key, value in data.items()}
    return data


def _make_backend(args: argparse.Namespace) -> Any:
    if args.backend == "onnxruntime":
        from cidpipe_runtime.ort_backend import OrtBackend

        return OrtBackend(args.model, provider=args.provider, threads=args.threads)
    from cidpipe_runtime.trt_backend import TrtBackend

    return TrtBackend(args.model)


def _host(backend: Any) -> dict[str, Any]:
    return host_facts(**{backend.name: getattr(backend, "library_version", "unknown")})


def run(args: argparse.Namespace) -> dict[str, Any]:
    if not os.path.isfile(args.model):
        raise InputError(f"model file not found: {args.model}")
    data = load_eval_npz(args.data, args.max_samples)
    backend = _make_backend(args)
    accuracy = accuracy_of(backend, data["x"], data["y"], args.batch_sizes[0], data.get("ref_pred"))
    latency, warnings = [], []
    for batch_size in args.batch_sizes:
        batch = tile_to_batch(data["x"], batch_size)
        stats = measure_latency(
            lambda batch=batch: backend.run(batch),
            warmup_runs=args.warmup_runs,
            warmup_seconds=args.warmup_seconds,
            runs=args.runs,
            min_seconds=args.min_seconds,
        )
        entry: dict[str, Any] = {"batch_size": batch_size, **stats}
        entry["throughput_ips"] = batch_size * 1000.0 / stats["mean_ms"] if stats["mean_ms"] > 0 else None
        latency.append(entry)
        warning = high_cov_warning(stats, args.cov_warning)
        if warning:
            warnings.append(f"batch {batch_size}: {warning}")
    return {
        "runtime_version": __version__,
        "backend": backend.name,
        "provider": backend.provider,
        "model": os.path.basename(args.model),
        "model_bytes": os.path.getsize(args.model),
        "threads": getattr(backend, "threads", args.threads),
        "accuracy": accuracy,
        "latency": latency,
        # this process loaded only this artifact, so its ru_maxrss is the artifact's peak
        "peak_rss_bytes": peak_rss_bytes(),
        "warnings": warnings,
        "host": _host(backend),
    }


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if isinstance(err, RuntimeFailure) else f"{type(err).__name__}: {text}"


def main(argv: list[str] | None = None) -> int:
    try:
        result = run(build_parser().parse_args(argv))
    except SystemExit as stop:  # --help exits 0 through argparse
        return int(stop.code or 0)
    except Exception as err:
        if os.environ.get("CIDPIPE_DEBUG") == "1":
            traceback.print_exc(file=sys.stderr)
        print(json.dumps({"error": _one_line(err)}))
        return 2
    print(json.dumps(result))
    return 0

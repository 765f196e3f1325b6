"""cidpipe's ORT latency protocol vs a plain timeit loop of session.run (1 thread, batch 1).

Exports cidpipe's resnet8 (CIFAR-size, 32x32) to ONNX, then measures both timers interleaved in one
process (cidpipe/bench/timer_check.py) and checks their medians agree within 10 %.

    python benchmarks/bench_latency_vs_timeit.py [--rounds 7] [--runs 300] [--out FILE]
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from cidpipe_runtime.ort_backend import OrtBackend

from cidpipe.atomic import atomic_write_text
from cidpipe.bench.timer_check import compare_with_timeit
from cidpipe.models.registry import build_model

TOLERANCE = 0.10


def export_resnet8(path: Path) -> None:
    torch.manual_seed(0)
    model = build_model("resnet8", num_classes=100).eval()
    example = torch.randn(1, 3, 32, 32)
    with warnings.catch_warnings():  # the TorchScript exporter is enough for a plain CNN and much faster
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            model, (example,), str(path), input_names=["input"], output_names=["logits"], dynamo=False
        )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--out", type=Path, help="also write the report to this file")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        model_path = Path(scratch) / "resnet8.onnx"
        export_resnet8(model_path)
        backend = OrtBackend(str(model_path), threads=1)
        x = np.random.default_rng(0).normal(size=(1, 3, 32, 32)).astype(np.float32)
        feed = {backend.input_name: x}
        session = backend.session
        result = compare_with_timeit(lambda: session.run(None, feed), rounds=args.rounds, runs=args.runs)

    agree = abs(result.ratio - 1.0) <= TOLERANCE
    command = " ".join(shlex.quote(part) for part in [sys.executable, *sys.argv])
    report = "\n".join(
        [
            f"# cidpipe latency protocol vs timeit  ({time.strftime('%Y-%m-%d %H:%M:%S %Z')})",
            f"command: {command}",
            f"host: {platform.node()} {platform.machine()} python {platform.python_version()} "
            f"onnxruntime {ort.__version__} cpus {os.cpu_count()} (shared machine)",
            "model: cidpipe resnet8 (100 classes), ONNX, batch 1, 1 intra-op thread, CPUExecutionProvider",
            f"rounds: {result.rounds} interleaved (ABBA), {result.runs_per_round} timed runs per timer "
            "per round",
            f"cidpipe measure_latency median: {result.protocol_median_ms:.4f} ms",
            f"timeit (number=1) median:       {result.timeit_median_ms:.4f} ms",
            f"ratio cidpipe/timeit: {result.ratio:.4f}  ->  {'AGREE' if agree else 'DISAGREE'} within "
            f"{TOLERANCE:.0%}",
        ]
    )
    print(report)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.out, report + "\n")
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())

"""INT8 vs FP32 latency on onnxruntime CPU (batch 1, one thread, interleaved, medians) and, given a trained
ONNX pair plus labelled images, the top-1 drop.

    python benchmarks/bench_int8.py                       # resnet8x4 + resnet20, untrained (latency only)
    python benchmarks/bench_int8.py --fp32 a.onnx --int8 a.int8.onnx --val val.npz   # trained pair: + drop

Untrained models are calibrated on Gaussian images: fine for latency, meaningless for accuracy (no drop is
reported for them). Variants measured to explain the speed-up: QDQ per-channel (cidpipe's default, the
stem convolution in float), the same with the stem in INT8 too, QDQ per-tensor, QDQ reduce_range and ORT's
QOperator format (stem in INT8), each at graph optimisation level "all".
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from onnxruntime.quantization import QuantFormat, QuantType, quant_pre_process, quantize_static

from cidpipe.export.ort_run import make_session, run_onnx, top1_percent
from cidpipe.export.torch2onnx import export_onnx
from cidpipe.machine import cpu_model
from cidpipe.quantize.calibration import ArrayCalibrationReader
from cidpipe.quantize.config import QuantizeConfig
from cidpipe.quantize.int8 import quantize_static_int8


def interleaved_latency(
    paths: dict[str, Path], x: np.ndarray, *, rounds: int, per_round: int
) -> dict[str, float]:
    """Median ms per batch-1 run; sessions alternate round by round so drift hits all of them alike."""
    sessions = {name: make_session(p, threads=1) for name, p in paths.items()}
    feeds = {name: {s.get_inputs()[0].name: x} for name, s in sessions.items()}
    for name, s in sessions.items():  # warm-up
        for _ in range(20):
            s.run(None, feeds[name])
    times: dict[str, list[float]] = {name: [] for name in sessions}
    for _ in range(rounds):
        for name, s in sessions.items():
            for _ in range(per_round):
                t0 = time.perf_counter()
                s.run(None, feeds[name])
                times[name].append((time.perf_counter() - t0) * 1e3)
    return {name: float(np.median(t)) for name, t in times.items()}


def variants(fp32: Path, work: Path, calib: np.ndarray) -> dict[str, Path]:
    out = {"fp32": fp32}
    out["int8 qdq per-channel"] = work / "pc.onnx"
    quantize_static_int8(fp32, out["int8 qdq per-channel"], calib, QuantizeConfig())
    stem_int8 = out["int8 qdq per-channel, stem int8 too"] = work / "pc_stem.onnx"
    quantize_static_int8(fp32, stem_int8, calib, QuantizeConfig(float_stem=False))
    out["int8 qdq per-tensor"] = work / "pt.onnx"
    quantize_static_int8(fp32, out["int8 qdq per-tensor"], calib, QuantizeConfig(per_channel=False))
    out["int8 qdq reduce_range"] = work / "rr.onnx"
    quantize_static_int8(fp32, out["int8 qdq reduce_range"], calib, QuantizeConfig(reduce_range=True))
    pre = work / "pre.onnx"
    quant_pre_process(str(fp32), str(pre))
    out["int8 qoperator per-channel"] = work / "qop.onnx"
    quantize_static(
        str(pre),
        str(out["int8 qoperator per-channel"]),
        ArrayCalibrationReader("input", calib),
        quant_format=QuantFormat.QOperator,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
    )
    return out


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", default="resnet8x4,resnet20")
    parser.add_argument("--fp32", type=Path, help="trained FP32 ONNX")
    parser.add_argument("--int8", type=Path, help="its INT8 ONNX")
    parser.add_argument("--val", type=Path, help=".npz with x [N,C,H,W] float32 and y [N] for the top-1 drop")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--per-round", type=int, default=50)
    parser.add_argument("--out", type=Path, help="also write the tables to this file")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    lines = [
        f"command: python {' '.join(shlex.quote(a) for a in sys.argv)}",
        f"machine: {cpu_model()}, onnxruntime {ort.__version__} CPU EP, batch 1, intra-op threads 1, "
        f"{args.rounds}x{args.per_round} interleaved runs, median ms",
        "",
        "| model | variant | median ms | speed-up vs FP32 |",
        "|---|---|---:|---:|",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.fp32 and args.int8:
            pairs = {"trained pair": {"fp32": args.fp32, "int8": args.int8}}
        else:
            pairs = {}
            from cidpipe.models import build_model

            for name in args.models.split(","):
                torch.manual_seed(0)
                fp32 = export_onnx(
                    build_model(name, num_classes=100).eval(), (3, 32, 32), work / f"{name}.onnx"
                )
                calib = rng.standard_normal((64, 3, 32, 32)).astype(np.float32)
                (work / name).mkdir()
                pairs[name] = variants(fp32, work / name, calib)
        for model, paths in pairs.items():
            shape = make_session(paths["fp32"]).get_inputs()[0].shape[1:]
            x = rng.standard_normal((1, *shape)).astype(np.float32)
            ms = interleaved_latency(paths, x, rounds=args.rounds, per_round=args.per_round)
            for name, value in ms.items():
                lines.append(f"| {model} | {name} | {value:.3f} | {ms['fp32'] / value:.2f}x |")
            print("\n".join(lines[-len(ms) :]), flush=True)
        if args.val and args.fp32 and args.int8:
            data = np.load(args.val)
            xv, yv = data["x"].astype(np.float32), data["y"]
            t32 = top1_percent(run_onnx(make_session(args.fp32), xv), yv)
            t8 = top1_percent(run_onnx(make_session(args.int8), xv), yv)
            lines += [
                "",
                "| artifact | top-1 % |",
                "|---|---:|",
                f"| FP32 | {t32:.2f} |",
                f"| INT8 | {t8:.2f} |",
                f"| drop (points) | {t32 - t8:.2f} |",
            ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

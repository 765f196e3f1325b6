"""Where an INT8 drop comes from: quantization itself, or the CPU kernels that run the graph.

    python benchmarks/bench_int8_kernels.py RUN_DIR [--out benchmarks/results/int8_kernels.md]

For the FP32 model a run exported, each INT8 setting (CPU U8S8 / TensorRT S8S8, per-channel / per-tensor
weights, 8- / 7-bit weights) is quantized with the run's calibration images and measured on the validation
and test splits twice: with ONNX Runtime's optimised CPU kernels (what `cidpipe bench` runs here) and with
graph optimisations off, i.e. the literal Q/DQ arithmetic with int32 accumulation (what TensorRT and ARM
dot-product kernels compute). On x86 CPUs without VNNI the two differ: the U8S8 kernels add pairs of
products in int16 and saturate.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import onnxruntime as ort
import torch
import yaml

from cidpipe.config import validate_recipe
from cidpipe.data.registry import load_dataset
from cidpipe.export.ort_run import make_session, run_onnx, top1_percent
from cidpipe.machine import cpu_model, x86_without_vnni
from cidpipe.quantize.int8 import quantize_static_int8
from cidpipe.stages.quantize import calibration_images

SETTINGS = [  # (label, target, per_channel, reduce_range)
    ("cpu U8S8, per-channel", "cpu", True, False),
    ("cpu U8S8, per-tensor", "cpu", False, False),
    ("cpu U8S8, per-channel, 7-bit weights", "cpu", True, True),
    ("trt S8S8, per-channel", "trt", True, False),
    ("trt S8S8, per-tensor", "trt", False, False),
]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run_dir", type=Path, help="a run directory with export/model.onnx and recipe.yaml")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)
    recipe = validate_recipe(yaml.safe_load((args.run_dir / "recipe.yaml").read_text()))
    bundle = load_dataset(recipe.data)
    splits = {"val": bundle.val.to_numpy(), "test": bundle.test.to_numpy()}
    calib = calibration_images(recipe, bundle)
    fp32 = args.run_dir / "export" / "model.onnx"

    def top1(path: Path, split: str, level: str) -> float:
        x, y = splits[split]
        return top1_percent(run_onnx(make_session(path, threads=1, optimization=level), x), y)

    base = {split: top1(fp32, split, "all") for split in splits}
    lines = [
        f"command: python {' '.join(sys.argv)}",
        f"machine: {cpu_model()} (x86 without VNNI: {x86_without_vnni()}), onnxruntime {ort.__version__}; "
        f"FP32 top-1 val {base['val']:.2f} / test {base['test']:.2f}; {recipe.quantize.calibration.method} "
        f"calibration on {len(calib)} training images; drops in points below FP32",
        "",
        "| INT8 setting | val drop, optimised kernels | val drop, exact | test drop, optimised "
        "| test drop, exact |",
        "|---|---:|---:|---:|---:|",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for label, target, per_channel, reduce_range in SETTINGS:
            cfg = recipe.quantize.model_copy(update={"target": target, "per_channel": per_channel,
                                                     "reduce_range": reduce_range, "max_drop": None})
            out = Path(tmp) / "int8.onnx"
            quantize_static_int8(fp32, out, calib, cfg)
            levels = ("all", "disabled")
            drops = [base[split] - top1(out, split, level) for split in splits for level in levels]
            lines.append(f"| {label} | " + " | ".join(f"{d:.2f}" for d in drops) + " |")
            print(lines[-1], flush=True)
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

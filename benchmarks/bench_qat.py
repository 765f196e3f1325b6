"""PTQ vs quantization-aware distillation (issue 16) on Fashion-MNIST: FP32 / PTQ / QAT top-1 on the full
test split per seed, a float control, and the INT8 latency of the PTQ and QAT artifacts (same graph).

    python benchmarks/bench_qat.py --seeds 0,1,2 --jobs 2 --out benchmarks/results/qat.md

One teacher (trained once, cached) and per seed a CID student, distilled, exported and quantized by the
pipeline with ``quantize.max_drop`` and ``quantize.qat.enabled: auto``: the quantize stage tries PTQ and
fine-tunes with fake quantization only when PTQ misses the budget (on validation). The PTQ artifact the stage
measured is rebuilt here (same calibration images, same nodes in float: deterministic) to be measured on test
too. The control is the same fine-tune (same graph, loss, epochs, LR) with quantization switched off: QAT's
gain over the FP32 student is partly more training, and QAT against the control is what quantization costs.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

from cidpipe.config import validate_recipe
from cidpipe.errors import ParityError, TrainingDiverged
from cidpipe.export.ort_run import make_session, run_onnx, top1_percent
from cidpipe.machine import cpu_model
from cidpipe.manifest import read_manifest
from cidpipe.pipeline import run_pipeline
from cidpipe.stages.contract import StageOptions

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_int8 import interleaved_latency  # noqa: E402


def recipe_for(args: argparse.Namespace, seed: int):
    return validate_recipe({
        "name": "bench_qat",
        "description": "issue 16: PTQ vs QAT on Fashion-MNIST",
        "out_dir": str(args.runs / f"seed{seed}"),  # a run directory per seed: the seeds run in parallel
        "data": {**_dataset(args), "limit_train": args.limit_train, "batch_size": 64,
                 "val_fraction": args.val_fraction},
        "teacher": {"model": {"arch": args.teacher},
                    "train": {"epochs": args.teacher_epochs, "lr": 0.05, "schedule": "cosine"}},
        "student": {"model": {"arch": args.student},
                    "train": {"epochs": args.student_epochs, "lr": args.student_lr, "schedule": "cosine",
                              "seeds": [seed]}},
        "distill": {"method": "cid", "cid": {"warmup_epochs": max(1, args.student_epochs // 3)}},
        "quantize": {"mode": "int8", "target": args.target, "max_drop": args.max_drop,
                     "per_channel": not args.per_tensor,
                     "max_sensitivity_candidates": args.candidates, "max_float_nodes": args.max_float_nodes,
                     "calibration": {"method": "minmax", "samples": 256},
                     "qat": {"enabled": True if args.qat == "true" else "auto", "epochs": args.qat_epochs,
                             "lr": args.qat_lr}},
        "export": {"targets": ["onnx"]},
        "bench": {"enabled": False}, "gate": {"enabled": False}, "report": {"enabled": False},
    })


def _dataset(args: argparse.Namespace) -> dict:
    """Fashion-MNIST, or the CIFAR-100-format folder ``--data-root`` names (make_fashion_pairs.py)."""
    if args.data_root is None:
        return {"name": "fashion-mnist"}
    return {"name": "cifar100", "root": str(args.data_root)}


def _top1(path: Path, x: np.ndarray, y: np.ndarray, optimization: str = "all") -> float:
    """ORT CPU top-1; ``optimization="disabled"`` is the graph's literal Q/DQ arithmetic (int32 accumulation,
    what TensorRT computes), whatever this CPU's INT8 kernels do."""
    session = make_session(path, threads=1, optimization=optimization)
    return top1_percent(run_onnx(session, x, batch_size=500), y)


def measure_seed(args: argparse.Namespace, seed: int) -> dict:
    """One seed: the pipeline's own verdict (PTQ, budget search, QAT fallback or refusal), then on test the
    FP32 student, the PTQ graph (its exact arithmetic and 7-bit weights too), a QAT fine-tune of that graph
    and the float control, measured here whatever the stage decided."""
    from cidpipe.data.registry import load_dataset
    from cidpipe.modelio import load_stage_model
    from cidpipe.quantize.int8 import judging_optimization, quantize_static_int8
    from cidpipe.quantize.qat_stage import run_fine_tune
    from cidpipe.stages.quantize import calibration_images

    torch.set_num_threads(1)
    began = time.perf_counter()
    recipe = recipe_for(args, seed)
    options = StageOptions(device="cpu")
    out: dict = {"seed": seed}
    try:
        run_pipeline(recipe, options)
        metrics = read_manifest(recipe.run_dir() / "quantize").metrics
        out.update(path=metrics.get("path"), val={
            "fp32": metrics.get("top1_fp32"), "ptq_drop": metrics["ptq"].get("drop"),
            "shipped_drop": metrics.get("drop"), "nodes_in_float": metrics["ptq"].get("nodes_in_float")})
        nodes = metrics["ptq"]["nodes_in_float"]
    except ParityError as err:  # the stage refused (exit 6): student and export are published, measure on
        out.update(path="exit 6", error=str(err), val={})
        nodes = []
    run_dir = recipe.run_dir()
    fp32 = run_dir / "export" / "model.onnx"
    bundle = load_dataset(recipe.data)
    test_x, test_y = bundle.test.to_numpy()
    val = bundle.val.to_numpy()
    calib = calibration_images(recipe, bundle)
    teacher, _ = load_stage_model(run_dir / "teacher")
    judged = judging_optimization(args.target)  # how the pipeline judges this variant
    with tempfile.TemporaryDirectory() as tmp:
        ptq, qat, control = (Path(tmp) / f"{name}.onnx" for name in ("ptq", "qat", "control"))
        cfg = recipe.quantize.model_copy(update={"max_drop": None})
        quantize_static_int8(fp32, ptq, calib, cfg, nodes_to_exclude=nodes)
        test = {"fp32": _top1(fp32, test_x, test_y), "ptq": _top1(ptq, test_x, test_y, judged),
                "ptq_exact": _top1(ptq, test_x, test_y, "disabled")}
        if args.target == "cpu" and not recipe.quantize.reduce_range:  # the fix for x86 without VNNI
            seven = Path(tmp) / "ptq7.onnx"
            quantize_static_int8(fp32, seven, calib, cfg.model_copy(update={"reduce_range": True}),
                                 nodes_to_exclude=nodes)
            test["ptq_7bit"] = _top1(seven, test_x, test_y)
        common = dict(teacher=teacher, bundle=bundle, calib=calib, val=val, options=options,
                      target=args.target)
        try:
            info = run_fine_tune(recipe, fp32, ptq, qat, checkpoint=Path(tmp) / "q.pt", **common)
            out["qat"] = {k: v for k, v in info.items() if k != "history"}
            test["qat"] = _top1(qat, test_x, test_y, judged)
            test["qat_exact"] = _top1(qat, test_x, test_y, "disabled")
            out["latency_ms"] = interleaved_latency({"ptq": ptq, "qat": qat}, test_x[:1], rounds=10,
                                                    per_round=30)
            out["same_graph"] = _ops(ptq) == _ops(qat)
        except TrainingDiverged as err:
            out["qat"] = {"diverged": str(err)}
        try:
            info = run_fine_tune(recipe, fp32, ptq, control, checkpoint=Path(tmp) / "c.pt",
                                 simulate_quantization=False, **common)
            test["control"] = _top1(control, test_x, test_y)
            out["val"]["control"] = info.get("top1_float")
        except TrainingDiverged as err:
            out["control_diverged"] = str(err)
    out["test"] = test
    out["seconds"] = round(time.perf_counter() - began)
    return out


def _ops(path: Path) -> list[tuple[str, str]]:
    return [(n.op_type, n.name) for n in onnx.load(str(path)).graph.node]


def _f(value, digits=2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _drop(test: dict, key: str, reference: str = "fp32") -> float | None:
    return None if key not in test or reference not in test else test[reference] - test[key]


def table(results: list[dict]) -> list[str]:
    """Top-1 on test; drops in points below the FP32 student, "exact" = the graph's literal Q/DQ arithmetic
    (ORT optimisations off), the others with this CPU's optimised INT8 kernels."""
    lines = [
        "| seed | FP32 | PTQ | PTQ drop: val / test / test exact / 7-bit | path | QAT "
        "| QAT drop: test / exact "
        "| FP32 + same fine-tune | QAT below that | scales (val trained / recal.) | PTQ ms | QAT ms "
        "| same graph |",
        "|---:|---:|---:|---|---|---:|---|---:|---:|---|---:|---:|---|",
    ]
    for r in results:
        t, v, q = r["test"], r["val"], r["qat"]
        scales = (f"{q.get('scales')} ({_f(q.get('top1_trained'))} / {_f(q.get('top1_recalibrated'))})"
                  if q.get("scales") else "diverged" if q.get("diverged") else "—")
        ms = r.get("latency_ms", {})
        same = "—" if "same_graph" not in r else ("yes" if r["same_graph"] else "NO")
        lines.append(
            f"| {r['seed']} | {_f(t['fp32'])} | {_f(t['ptq'])} | {_f(v.get('ptq_drop'))} / "
            f"{_f(_drop(t, 'ptq'))} / "
            f"{_f(_drop(t, 'ptq_exact'))} / {_f(_drop(t, 'ptq_7bit'))} | {r['path']} | {_f(t.get('qat'))} | "
            f"{_f(_drop(t, 'qat'))} / "
            f"{_f(_drop(t, 'qat_exact'))} | {_f(t.get('control'))} | {_f(_drop(t, 'qat', 'control'))} | "
            f"{scales} | {_f(ms.get('ptq'), 3)} | {_f(ms.get('qat'), 3)} | {same} |"
        )
    ok = results
    if len(ok) > 1:
        def stat(key):
            values = [r["test"][key] for r in ok if key in r["test"]]
            return f"{np.mean(values):.2f} ± {np.std(values, ddof=1):.2f}" if len(values) > 1 else "—"
        lines.append(f"| mean ± std | {stat('fp32')} | {stat('ptq')} | | | {stat('qat')} | | "
                     f"{stat('control')} | | | | | |")
    refused = [r for r in results if "error" in r]
    lines += ["", *(f"Seed {r['seed']}, the pipeline's verdict: {r['error']}" for r in refused)]
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--jobs", type=int, default=1, help="seeds measured in parallel (one thread each)")
    parser.add_argument("--data-root", type=Path, help="a CIFAR-100-format folder instead of Fashion-MNIST, "
                        "e.g. the 100-class pairs of benchmarks/make_fashion_pairs.py")
    parser.add_argument("--teacher", default="resnet8")
    parser.add_argument("--student", default="mobilenetv2")
    parser.add_argument("--target", default="cpu", choices=["cpu", "trt"])
    parser.add_argument("--limit-train", type=int, default=10000)
    parser.add_argument("--val-fraction", type=float, default=0.05, help="of the 60000 training images")
    parser.add_argument("--teacher-epochs", type=int, default=5)
    parser.add_argument("--student-epochs", type=int, default=8)
    parser.add_argument("--student-lr", type=float, default=0.01, help="the paper's for MobileNetV2")
    parser.add_argument("--qat-epochs", type=int, default=2)
    parser.add_argument("--qat", default="auto", choices=["true", "auto"],
                        help="auto: fine-tune only when PTQ misses the budget (the pipeline's default "
                        "fallback); true: every seed")
    parser.add_argument("--qat-lr", type=float, default=0.0005, help="quantize.qat.lr's default")
    parser.add_argument("--max-drop", type=float, default=0.5)
    parser.add_argument("--per-tensor", action=argparse.BooleanOptionalAction, default=True,
                        help="per-tensor INT8 weights (runtimes without per-channel support): MobileNet "
                        "depthwise convolutions are the classic PTQ failure there")
    parser.add_argument("--candidates", type=int, default=4)
    parser.add_argument("--max-float-nodes", type=int, default=2)
    parser.add_argument("--runs", type=Path, default=Path("runs-bench-qat"))
    parser.add_argument("--out", type=Path)
    parser.add_argument("--render", type=Path, help="only print the table of a results .json written before")
    args = parser.parse_args()
    if args.render is not None:
        print("\n".join(table(json.loads(args.render.read_text()))))
        return 0
    # One thread per process: on this shared 2-core VM two OpenMP threads measured 12x slower per step
    # (18.9 vs 1.6 s for a MobileNetV3 step at load 8), the threads spin-waiting on each other.
    torch.set_num_threads(1)
    seeds = [int(s) for s in args.seeds.split(",")]
    first = recipe_for(args, seeds[0])
    run_pipeline(first, StageOptions(device="cpu"), only="teacher")  # once, shared: copied, then cached
    for seed in seeds[1:]:
        teacher = recipe_for(args, seed).run_dir() / "teacher"
        if not teacher.exists():
            shutil.copytree(first.run_dir() / "teacher", teacher)
    # spawn: a fresh interpreter per worker, not a fork of one whose torch thread pool already ran.
    with ProcessPoolExecutor(max_workers=max(1, args.jobs), mp_context=get_context("spawn")) as pool:
        results = list(pool.map(measure_seed, [args] * len(seeds), seeds))
    lines = [
        f"command: python {' '.join(shlex.quote(a) for a in sys.argv)}",
        f"machine: {cpu_model()}, torch {torch.__version__}, onnxruntime {ort.__version__} CPU EP; "
        f"top-1 on the full test split of {args.data_root or 'Fashion-MNIST'}; budget {args.max_drop} "
        "points judged on validation; latency batch 1, 1 thread, median ms",
        "",
        *table(results),
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
        args.out.with_suffix(".json").write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

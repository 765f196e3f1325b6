"""GPU check for the CIFAR-100 fast path, prepared for a session with a CUDA device (< 5 minutes on an H100).

What it measures, all in ONE run with the variants interleaved (benchmarks/bench_fast_path.py's timing):
- images/s of the CUDA training step of the real loop (train_step): bf16 autocast + channels_last +
  fused SGD, resnet32x4 -> resnet8x4, CIFAR-size 32x32 inputs, 100 classes, batch 64;
- CID vs KD on that fast path (what CID's extra losses and dictionary cost);
- the fast path vs the reference-style loop (DataLoader + PIL transforms with --workers workers,
  per-class / per-sample Python loops with host syncs, fp32) and with teacher outputs reused;
- host synchronisations inside the fast CID step, counted with torch.cuda.set_sync_debug_mode;
- the projected wall time of a full 240-epoch CIFAR-100 run (50,000 images x 240 / images/s).
With --compile it instead compares the eager fast CID step with the same step under torch.compile
(the loop's opt-in ``optim.compile``: mode default, and on CUDA reduce-overhead, i.e. CUDA graphs),
compilation kept out of the timing and reported apart; --with-reference adds the reference-style loop.
It prints a markdown block to paste into BENCHMARKS.md.

    python benchmarks/gpu_check.py                              # on the GPU machine
    python benchmarks/gpu_check.py --compile                    # eager vs torch.compile, same step
    python benchmarks/gpu_check.py --device cpu --iters 2       # smoke test of the script itself
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_fast_path import (  # noqa: E402
    build_models,
    fast_path_runner,
    machine_description,
    markdown_rows,
    measure_interleaved,
    reference_runner,
    synchronise,
    synthetic_cifar,
)


def count_host_syncs(step, device: str, steps: int = 3) -> int | None:
    """Synchronising CUDA calls made by ``steps`` calls of ``step`` (None off CUDA: nothing to count)."""
    if not device.startswith("cuda"):
        return None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            for _ in range(steps):
                step()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum(is_sync_warning(str(w.message)) for w in caught)


def is_sync_warning(message: str) -> bool:
    """A real synchronising call, not torch's one-off notice that the debug mode is a prototype."""
    return "called a synchronizing" in message.lower()


def compare_compiled(args, images, labels, student, teacher, warmup: int, began: float) -> None:
    common = {"device": args.device, "batch": args.batch}
    modes = ["default"] + (["reduce-overhead"] if args.device.startswith("cuda") else [])
    runners = {"CID fast path, eager": fast_path_runner("cid", student, teacher, images, labels, **common)}
    compile_s = {}
    for mode in modes:
        name = f"CID fast path + torch.compile({mode})"
        runners[name] = fast_path_runner("cid", student, teacher, images, labels, compile_mode=mode, **common)
        compiling = time.perf_counter()
        for _ in range(3):  # compilation, then CUDA-graph recording for reduce-overhead
            runners[name]()
        synchronise(args.device)
        compile_s[mode] = time.perf_counter() - compiling
    if args.with_reference:
        runners["CID reference-style"] = reference_runner(student, teacher, images, labels,
                                                          workers=args.workers, **common)
    results = measure_interleaved(runners, device=args.device, iters=args.iters,
                                  block=min(args.block, args.iters), warmup=warmup, batch=args.batch)
    print("### torch.compile of the fast CID step\n")
    print(f"- machine: {machine_description(args.device)}")
    timings = ", ".join(f"{mode} {seconds:.1f} s" for mode, seconds in compile_s.items())
    print(f"- first three compiled steps (compilation, graph recording): {timings}; script wall time "
          f"{time.perf_counter() - began:.0f} s\n")
    baseline = "CID reference-style" if args.with_reference else "CID fast path, eager"
    print("\n".join(markdown_rows(results, baseline, args.device, args.batch)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--iters", type=int, default=40, help="timed steps per variant")
    parser.add_argument("--block", type=int, default=10, help="steps per timed block")
    parser.add_argument("--warmup", type=int, default=None, help="default: 5 on CUDA, 1 on CPU")
    parser.add_argument("--samples", type=int, default=None, help="default: 4096 on CUDA, 256 on CPU")
    parser.add_argument("--workers", type=int, default=8, help="reference DataLoader workers (reference: 8)")
    parser.add_argument("--teacher", default="resnet32x4")
    parser.add_argument("--student", default="resnet8x4")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--compile", action="store_true", help="eager vs torch.compile of the fast step")
    parser.add_argument("--with-reference", action="store_true",
                        help="with --compile: also time the reference-style loop and compare to it")
    args = parser.parse_args()
    on_cuda = args.device.startswith("cuda")
    if on_cuda and not torch.cuda.is_available():
        raise SystemExit("no CUDA device visible; run on the GPU machine, or --device cpu for a smoke test")
    warmup = args.warmup if args.warmup is not None else (5 if on_cuda else 1)
    samples = args.samples if args.samples is not None else (4096 if on_cuda else 256)
    workers = args.workers if on_cuda else min(args.workers, 2)
    if on_cuda:
        torch.backends.cudnn.benchmark = True
    began = time.perf_counter()
    images, labels = synthetic_cifar(samples, 100)
    student, teacher = build_models(args.teacher, args.student, 100)
    common = {"device": args.device, "batch": args.batch}
    if args.compile:
        compare_compiled(args, images, labels, student, teacher, warmup, began)
        return
    cid_fast = fast_path_runner("cid", student, teacher, images, labels, **common)
    runners = {
        "CID fast path (bf16 autocast + channels_last on CUDA)": cid_fast,
        "KD fast path (same settings)": fast_path_runner("kd", student, teacher, images, labels, **common),
        "CID fast path + reused teacher outputs (exact only without augmentation)": fast_path_runner(
            "cid", student, teacher, images, labels, reuse_teacher=True, **common),
        f"CID reference-style (DataLoader+PIL, {workers} workers, loops+syncs, fp32)": reference_runner(
            student, teacher, images, labels, workers=workers, **common),
    }
    reference = list(runners)[-1]
    for _ in range(warmup):
        cid_fast()
    syncs = count_host_syncs(cid_fast, args.device)
    results = measure_interleaved(runners, device=args.device, iters=args.iters,
                                  block=min(args.block, args.iters), warmup=warmup, batch=args.batch)
    cid_ips = results[list(runners)[0]]["images_per_s"]
    kd_ips = results[list(runners)[1]]["images_per_s"]
    print("### CIFAR-100 fast path, GPU check\n")
    print(f"- machine: {machine_description(args.device)}")
    print(f"- models: {args.teacher} -> {args.student}, 100 classes, batch {args.batch}, 32x32 synthetic "
          f"uint8; {args.iters} timed steps per variant in blocks of {min(args.block, args.iters)}, "
          f"interleaved, median; {warmup} warm-up steps")
    print(f"- CID / KD step time on the fast path: {kd_ips / cid_ips:.3f}x")
    sync_text = "not counted (CPU)" if syncs is None else f"{syncs} in 3 steps"
    print(f"- host synchronisations inside the fast CID step: {sync_text}")
    print(f"- script wall time: {time.perf_counter() - began:.0f} s\n")
    print("\n".join(markdown_rows(results, reference, args.device, args.batch)))


if __name__ == "__main__":
    main()

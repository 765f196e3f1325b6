"""Benchmark: training images/s of cidpipe's CID fast path vs a reference-style loop, in ONE run.

Fast path: a TensorSplit on the training device, batched device-side crop+flip+normalise, the vectorised
CIDDistiller and the training loop's own step (cidpipe.training.step.train_step), fused SGD + bf16
autocast + channels_last on CUDA (the loop's defaults), no host sync inside the step.
Reference-style: a torchvision DataLoader with per-sample PIL transforms and worker processes, a per-class
Python loop for the class loss and a per-sample dictionary update with host syncs and CPU counters
(benchmarks/fast_path_reference.py). Same models, data, batch and maths (post-warm-up CID step:
KD + sample + class + CE on g + dictionary accumulation).

Timing: variants run interleaved (block of A, block of B, ... repeated), each block a fixed number of
iterations ended by a device synchronisation; the median images/s over blocks is reported.
Optional variants (--variants) add what changes the numbers, not the maths: ``reuse`` (teacher outputs
cached per sample: exact only without augmentation) and ``bf16`` (autocast on CPU; reduced precision).

    python benchmarks/bench_fast_path.py --device cpu --threads 2 --workers 2 --iters 6 --block 2
"""

from __future__ import annotations

import argparse
import copy
import itertools
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fast_path_reference import ReferenceStyleCID, reference_loader, synthetic_cifar  # noqa: E402

from cidpipe.data.resident import place_split  # noqa: E402
from cidpipe.data.tensor_split import TensorSplit  # noqa: E402
from cidpipe.distill.config import CIDConfig, DistillConfig  # noqa: E402
from cidpipe.distill.registry import build_distiller  # noqa: E402
from cidpipe.machine import cpu_model  # noqa: E402
from cidpipe.models import build_model  # noqa: E402
from cidpipe.train_config import OptimConfig  # noqa: E402
from cidpipe.training.loop import autocast_context  # noqa: E402
from cidpipe.training.schedule import build_optimizer  # noqa: E402
from cidpipe.training.step import compiled_step, train_step  # noqa: E402

CIFAR100_MEAN = (0.5071, 0.4867, 0.4408)
CIFAR100_STD = (0.2675, 0.2565, 0.2761)
FULL_RUN_IMAGES = 50_000 * 240  # CIFAR-100 training set x the paper's 240 epochs
LR = 0.05


def synchronise(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def machine_description(device: str) -> str:
    text = (f"{cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads")
    if device.startswith("cuda"):
        text += f", GPU {torch.cuda.get_device_name(device)}"
    return text


def build_models(teacher_arch: str, student_arch: str, classes: int, seed: int = 0):
    torch.manual_seed(seed)
    return build_model(student_arch, classes), build_model(teacher_arch, classes).eval()


def fast_path_runner(method: str, student, teacher, images, labels, *, device: str, batch: int,
                     amp: str = "auto", channels_last: bool | None = None,
                     reuse_teacher: bool = False, augment: bool = True,
                     compile_mode: str | None = None) -> Callable[[], None]:
    """One call = one training step of the real loop on a device-resident, device-augmented split.

    ``compile_mode`` (default / reduce-overhead / ...) compiles the step as the loop's ``optim.compile``
    does; the first calls pay the compilation (keep them in the warm-up). The returned step has an
    ``all_finite()`` method: a benchmark of a step whose loss went NaN measures nothing.
    """
    classes = int(student.num_classes)
    cfg = DistillConfig(method=method, cid=CIDConfig(warmup_epochs=1))
    distiller = build_distiller(method, copy.deepcopy(student), copy.deepcopy(teacher), cfg,
                                num_classes=classes, epochs=2)
    optim = OptimConfig(amp=amp, channels_last=channels_last, compile=compile_mode is not None,
                        compile_mode=compile_mode or "default")
    use_cl = channels_last if channels_last is not None else device.startswith("cuda")
    distiller.to(device)
    if use_cl:
        distiller.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(distiller.param_groups(optim.weight_decay), optim, LR, device)
    autocast, scaler = autocast_context(optim, device)
    split = place_split(TensorSplit(images, labels, CIFAR100_MEAN, CIFAR100_STD), device, "on")
    # The post-warm-up phase (the most work per step): D built, g in use, the next D accumulating.
    distiller.on_epoch_start(0)
    distiller.on_epoch_end(0)
    distiller.on_epoch_start(1)
    distiller.train()
    if reuse_teacher:
        plain = split.batches(256, shuffle=False, augment=False, device=device, with_index=True)
        with autocast:
            distiller.build_teacher_cache(plain, len(split))
    forward = compiled_step(distiller, optim, device)
    generator = torch.Generator().manual_seed(0)

    def epochs() -> Iterator[tuple]:
        while True:
            yield from split.batches(batch, shuffle=True, augment=augment, device=device,
                                     generator=generator, drop_last=True, with_index=True)

    batches = epochs()
    correct = torch.zeros((), device=device)
    finite = torch.ones((), dtype=torch.bool, device=device)

    def step() -> None:
        nonlocal correct, finite
        x, y, index = next(batches)
        if use_cl:
            x = x.contiguous(memory_format=torch.channels_last)
        out = train_step(forward, optimizer, autocast, scaler, x, y, index if reuse_teacher else None)
        correct = correct + (out.logits.detach().argmax(1) == y).sum()  # the loop's on-device metrics
        finite = finite & torch.isfinite(out.loss.detach())

    step.all_finite = lambda: bool(finite)
    return step


def reference_runner(student, teacher, images, labels, *, device: str, batch: int,
                     workers: int) -> Callable[[], None]:
    classes = int(student.num_classes)
    student = copy.deepcopy(student).to(device)
    teacher = copy.deepcopy(teacher).to(device)
    regressor = torch.nn.Linear(student.feature_dim, teacher.feature_dim).to(device)
    head = torch.nn.Linear(2 * student.feature_dim, classes).to(device)
    ref = ReferenceStyleCID(student, teacher, regressor, head, num_classes=classes, lr=LR, device=device)
    ref.use_head = True
    loader = reference_loader(images, labels, CIFAR100_MEAN, CIFAR100_STD, batch_size=batch,
                              num_workers=workers, augment=True, persistent=True)
    batches = itertools.chain.from_iterable(iter(loader) for _ in itertools.count())

    def step() -> None:
        x, y = next(batches)
        ref.step(x, y)

    return step


def require_finite(runners: dict[str, Callable[[], None]]) -> None:
    """Stop with the variant's name if any timed fast-path step produced a non-finite loss."""
    for name, run in runners.items():
        check = getattr(run, "all_finite", None)
        if check is not None and not check():
            raise SystemExit(f"{name}: the loss went non-finite during the benchmark; its timing is void")


def measure_interleaved(runners: dict[str, Callable[[], None]], *, device: str, iters: int, block: int,
                        warmup: int, batch: int) -> dict[str, dict[str, float]]:
    """Median images/s per runner over blocks of ``block`` steps, runners alternating block by block."""
    for run in runners.values():
        for _ in range(warmup):
            run()
    synchronise(device)
    rates: dict[str, list[float]] = {name: [] for name in runners}
    blocks = max(1, iters // block)
    for round_index in range(blocks):
        names = list(runners) if round_index % 2 == 0 else list(reversed(runners))  # alternate the order
        for name in names:
            began = time.perf_counter()
            for _ in range(block):
                runners[name]()
            synchronise(device)
            rates[name].append(block * batch / (time.perf_counter() - began))
    require_finite(runners)
    return {name: {"images_per_s": statistics.median(r), "blocks": len(r)} for name, r in rates.items()}


def projected_hours(images_per_s: float) -> float:
    return FULL_RUN_IMAGES / images_per_s / 3600.0


def markdown_rows(results: dict[str, dict[str, float]], baseline: str, device: str, batch: int) -> list[str]:
    rows = ["| variant | device | images/s (median) | ms/step | vs reference | projected 240-epoch run |",
            "|---|---|---:|---:|---:|---:|"]
    base = results[baseline]["images_per_s"]
    for name, r in results.items():
        ips = r["images_per_s"]
        rows.append(f"| {name} | {device} | {ips:.1f} | {1000 * batch / ips:.0f} | {ips / base:.2f}x | "
                    f"{projected_hours(ips):.1f} h |")
    return rows


VARIANT_TOKENS = {
    "cl": "channels_last",
    "bf16": "bf16 autocast (reduced precision)",
    "reuse": "reused teacher outputs (exact only with data.augment false)",
}


def variant_label(tokens: list[str]) -> str:
    return "fast path (cidpipe loop step)" + "".join(f" + {VARIANT_TOKENS[t]}" for t in tokens)


def parse_variants(text: str) -> list[list[str]]:
    """"cl,reuse+bf16" -> [["cl"], ["reuse", "bf16"]]; each token one of VARIANT_TOKENS."""
    variants = []
    for item in filter(None, (v.strip() for v in text.split(","))):
        tokens = [t.strip() for t in item.split("+")]
        unknown = [t for t in tokens if t not in VARIANT_TOKENS]
        if unknown:
            raise SystemExit(f"unknown variant token {unknown[0]!r}; use {', '.join(VARIANT_TOKENS)}")
        variants.append(tokens)
    return variants


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2, help="reference DataLoader workers (reference: 8)")
    parser.add_argument("--teacher", default="resnet32x4")
    parser.add_argument("--student", default="resnet8x4")
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--samples", type=int, default=512, help="synthetic training images")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--iters", type=int, default=20, help="timed steps per variant")
    parser.add_argument("--block", type=int, default=5, help="steps per timed block")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--variants", default="", help="extra fast-path variants, e.g. cl,reuse+cl,bf16+cl "
                        "(tokens: " + ", ".join(VARIANT_TOKENS) + ")")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    images, labels = synthetic_cifar(args.samples, args.classes)
    student, teacher = build_models(args.teacher, args.student, args.classes)
    common = {"device": args.device, "batch": args.batch}
    runners = {variant_label([]): fast_path_runner("cid", student, teacher, images, labels, **common)}
    for tokens in parse_variants(args.variants):
        runners[variant_label(tokens)] = fast_path_runner(
            "cid", student, teacher, images, labels, amp="bf16" if "bf16" in tokens else "auto",
            channels_last=True if "cl" in tokens else None, reuse_teacher="reuse" in tokens, **common)
    reference = f"reference-style (DataLoader+PIL, {args.workers} workers, loops+syncs)"
    runners[reference] = reference_runner(student, teacher, images, labels, workers=args.workers, **common)
    results = measure_interleaved(runners, device=args.device, iters=args.iters, block=args.block,
                                  warmup=args.warmup, batch=args.batch)
    print(f"machine: {machine_description(args.device)}")
    print(f"models: {args.teacher} -> {args.student}, {args.classes} classes, batch {args.batch}, "
          f"32x32 synthetic uint8, {args.iters} timed steps per variant in blocks of {args.block}, "
          f"interleaved, after {args.warmup} warm-up steps")
    print("\n".join(markdown_rows(results, reference, args.device, args.batch)))


if __name__ == "__main__":
    main()

"""Benchmark: CID's loss + dictionary update, vectorised (cidpipe) vs a per-sample / per-class loop.

One post-warm-up step's CID work, forward AND backward: KD, the sample loss through R, the class-shape
loss, CE on g([h ; softmax(z/T) @ D]) and the dictionary accumulation. The loop version does what the
reference implementation's structure does (written here from the method's description): the dictionary
is updated one sample at a time with Python-scalar weights and the class loss loops over the classes
present in the batch. KD, the sample loss and CE are batched in both, as in the reference.
Both are timed in ONE run, interleaved (vectorised block, loop block, repeat), and the medians compared.

Optionally (--step) it also times a whole distiller step (forward, backward, SGD step) of CID against
KD on the same student/teacher pair, to show CID's extra losses cost little.

    python benchmarks/bench_cid_loss.py --device cpu --threads 1 --step
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from cidpipe.distill.deploy import intervened_logits
from cidpipe.distill.losses import (
    accumulate_dictionary_sums_,
    class_representation_loss,
    kd_loss,
    sample_representation_loss,
    true_class_probability,
)

TEMPERATURE = 4.0
SAMPLE_WEIGHT, CLASS_WEIGHT = 10.0, 1.0


def make_problem(batch: int, classes: int, d_s: int, d_t: int, device: str, seed: int = 0) -> dict:
    generator = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=generator).to(device)

    torch.manual_seed(seed)
    return {
        "student_feat": randn(batch, d_s).relu().requires_grad_(),
        "teacher_feat": randn(batch, d_t).relu(),
        "teacher_logits": randn(batch, classes) * 3,
        "labels": torch.randint(0, classes, (batch,), generator=generator).to(device),
        "fc_s": nn.Linear(d_s, classes).to(device),
        "regressor": nn.Linear(d_s, d_t).to(device),
        "head": nn.Linear(2 * d_s, classes).to(device),
        "dictionary": randn(classes, d_s),
        "classes": classes,
    }


def _shared_losses(p: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    h = p["student_feat"]
    z = p["fc_s"](h)
    kd = kd_loss(z, p["teacher_logits"], TEMPERATURE)
    sample = sample_representation_loss(p["regressor"](h), p["teacher_feat"])
    g_logits = intervened_logits(p["head"], h, z.detach(), p["dictionary"], TEMPERATURE)
    return kd, sample, F.cross_entropy(g_logits, p["labels"])


def _shared_or_zero(p: dict, with_shared: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    if with_shared:
        return _shared_losses(p)
    zero = p["student_feat"].new_zeros(())
    return zero, zero, zero


def vectorised_step(
    p: dict, feature_sum: torch.Tensor, weight_sum: torch.Tensor, with_shared: bool = True
) -> torch.Tensor:
    kd, sample, ce = _shared_or_zero(p, with_shared)
    shape = class_representation_loss(p["student_feat"], p["teacher_feat"], p["labels"], p["classes"])
    with torch.no_grad():
        weights = true_class_probability(p["teacher_logits"], p["labels"], TEMPERATURE)
        features = p["student_feat"].detach()
        accumulate_dictionary_sums_(feature_sum, weight_sum, features, weights, p["labels"])  # as CID
    loss = ce + kd + SAMPLE_WEIGHT * sample + CLASS_WEIGHT * shape
    loss.backward()
    return loss.detach()


def loop_step(
    p: dict, feature_sum: torch.Tensor, weight_sum: list[float], with_shared: bool = True
) -> torch.Tensor:
    kd, sample, ce = _shared_or_zero(p, with_shared)
    h, labels = p["student_feat"], p["labels"]
    per_class = []
    for k in torch.unique(labels).tolist():
        index = (labels == k).nonzero().squeeze(1)
        n = index.numel()
        if n < 2:
            continue
        s = F.normalize(h[index], dim=1)
        t = F.normalize(p["teacher_feat"][index], dim=1)
        per_class.append(((t @ t.T - s @ s.T) ** 2).sum() / n**2)
    shape = torch.stack(per_class).mean() if per_class else h.new_zeros(())
    with torch.no_grad():
        probabilities = F.softmax(p["teacher_logits"] / TEMPERATURE, dim=1)
        detached = h.detach()
        for i in range(h.shape[0]):
            c = int(labels[i])
            w = float(probabilities[i, c])
            feature_sum[c] += w * detached[i]
            weight_sum[c] += w
    loss = ce + kd + SAMPLE_WEIGHT * sample + CLASS_WEIGHT * shape
    loss.backward()
    return loss.detach()


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _timed(fn, iterations: int, device: str) -> float:
    _sync(device)
    start = time.perf_counter()
    for _ in range(iterations):
        fn()
    _sync(device)
    return (time.perf_counter() - start) / iterations * 1e3


def _interleaved(first, second, repeats: int, iterations: int, device: str) -> tuple[float, float]:
    """Median ms per call of each; blocks alternate, and so does their order, to cancel drift."""
    first_times, second_times = [], []
    for repeat in range(repeats):
        if repeat % 2:
            second_times.append(_timed(second, iterations, device))
            first_times.append(_timed(first, iterations, device))
        else:
            first_times.append(_timed(first, iterations, device))
            second_times.append(_timed(second, iterations, device))
    return statistics.median(first_times), statistics.median(second_times)


def bench_loss(args: argparse.Namespace, with_shared: bool) -> tuple[float, float]:
    """Median ms per step (vectorised, loop); ``with_shared`` False times only the looped parts."""
    p = make_problem(args.batch, args.classes, args.d_s, args.d_t, args.device)
    vec_sum = torch.zeros(args.classes, args.d_s, device=args.device)
    vec_weight = torch.zeros(args.classes, device=args.device)
    loop_sum = torch.zeros(args.classes, args.d_s, device=args.device)
    loop_weight = [0.0] * args.classes
    # Same numbers first: the comparison is between two implementations of one computation.
    loss_vec = vectorised_step(p, vec_sum, vec_weight, with_shared)
    loss_loop = loop_step(p, loop_sum, loop_weight, with_shared)
    torch.testing.assert_close(loss_vec, loss_loop, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(vec_sum, loop_sum, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(vec_weight.cpu(), torch.tensor(loop_weight), atol=1e-5, rtol=1e-5)

    def run_vectorised():
        vectorised_step(p, vec_sum, vec_weight, with_shared)

    def run_loop():
        loop_step(p, loop_sum, loop_weight, with_shared)

    for _ in range(3):  # warm-up both paths
        run_vectorised()
        run_loop()
    vec_ms, loop_ms = _interleaved(run_vectorised, run_loop, args.repeats, args.iterations, args.device)
    return vec_ms, loop_ms


def bench_step(args: argparse.Namespace) -> tuple[float, float]:
    from cidpipe.distill import build_distiller
    from cidpipe.distill.config import DistillConfig
    from cidpipe.models.registry import build_model

    cfg = DistillConfig()
    cfg.cid.warmup_epochs = 1
    torch.manual_seed(0)
    x = torch.randn(args.batch, 3, args.image_size, args.image_size, device=args.device)
    y = torch.randint(0, args.classes, (args.batch,), device=args.device)
    steppers = {}
    for method in ("kd", "cid"):
        torch.manual_seed(0)
        student = build_model(args.student, args.classes)
        teacher = build_model(args.teacher, args.classes)
        distiller = build_distiller(method, student, teacher, cfg, num_classes=args.classes, epochs=3)
        distiller.to(args.device).train()
        optimizer = torch.optim.SGD(distiller.param_groups(5e-4), lr=0.01, momentum=0.9)
        distiller.on_epoch_start(0)
        if method == "cid":  # time the post-warm-up step, the most expensive one
            distiller(x, y)
            distiller.on_epoch_end(0)
            distiller.on_epoch_start(1)

        def step(distiller=distiller, optimizer=optimizer):
            optimizer.zero_grad(set_to_none=True)
            distiller(x, y).loss.backward()
            optimizer.step()

        steppers[method] = step
    for _ in range(3):
        steppers["kd"]()
        steppers["cid"]()
    return _interleaved(steppers["kd"], steppers["cid"], args.repeats, args.step_iterations, args.device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--d-s", type=int, default=256, help="student feature size (resnet8x4)")
    parser.add_argument("--d-t", type=int, default=256, help="teacher feature size (resnet32x4)")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--iterations", type=int, default=20, help="steps per timed block")
    parser.add_argument("--step", action="store_true", help="also time a whole CID step against a KD step")
    parser.add_argument("--student", default="tinycnn")
    parser.add_argument("--teacher", default="tinycnn")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--step-iterations", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    shape = f"B={args.batch} K={args.classes} d_s={args.d_s} d_t={args.d_t}"
    print("| benchmark | shape | device | vectorised ms | loop ms | speedup |")
    print("|---|---|---|---:|---:|---:|")
    rows = [
        ("CID loss (KD+sample+class+CE on g) + dictionary, fwd+bwd", True),
        ("class loss + dictionary update only (the looped parts), fwd+bwd", False),
    ]
    for title, with_shared in rows:
        vec_ms, loop_ms = bench_loss(args, with_shared)
        print(
            f"| {title} | {shape} | {args.device} ({args.threads} thr) "
            f"| {vec_ms:.3f} | {loop_ms:.3f} | {loop_ms / vec_ms:.1f}x |"
        )
    if args.step:
        kd_ms, cid_ms = bench_step(args)
        pair = f"{args.teacher}->{args.student} B={args.batch} {args.image_size}px K={args.classes}"
        print()
        print("| benchmark | shape | device | KD step ms | CID step ms | CID / KD |")
        print("|---|---|---|---:|---:|---:|")
        print(
            f"| distiller step (fwd+bwd+SGD) | {pair} | {args.device} ({args.threads} thr) "
            f"| {kd_ms:.2f} | {cid_ms:.2f} | {cid_ms / kd_ms:.3f}x |"
        )


if __name__ == "__main__":
    main()

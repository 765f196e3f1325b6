"""The headline: what distillation bought, per device and batch size, for every deployed artifact.

Each student artifact is compared with the teacher as it would otherwise be deployed on the same device at
the same batch size: the student's torch model with the teacher's torch model, every file artifact (FP32 /
INT8 / FP16 ONNX, engines) with the teacher's FP32 ONNX (its torch model when it was not exported). Speed-up
is on p50 (the median is what a user feels; p99 of a short run on a shared machine is mostly noise), size is
the artifact's bytes, parameters come from the training manifests. Nothing is computed for rows that did
not pass, or when the run benched no teacher.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from cidpipe.gate.rundir import RunData, artifact_label


@dataclass(frozen=True)
class HeadlineRow:
    device: str
    batch_size: int
    artifact: str  # the student artifact's format, e.g. onnx-int8
    teacher_artifact: str  # what it is compared with, e.g. onnx-fp32
    student_top1: float | None
    teacher_top1: float | None
    top1_delta: float | None  # student - teacher, points
    speedup_p50: float | None  # teacher p50 / student p50
    size_ratio: float | None  # teacher bytes / student bytes
    params_ratio: float | None  # teacher parameters / student parameters
    # Test images both top-1s were measured on (bench.max_eval_samples can cap it below the whole split, so
    # the headline's accuracy can differ from the training stages' full-split numbers; it says on how many).
    eval_images: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _p50(row: dict[str, Any]) -> float | None:
    value = (row.get("latency") or {}).get("p50_ms")
    return float(value) if value else None


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or denominator is None or denominator <= 0:
        return None
    return float(numerator) / float(denominator)


def _teacher_baseline(run: RunData, device: str, batch: int, student_format: str) -> dict[str, Any] | None:
    passing = [
        row
        for row in run.teacher_results
        if row.get("status") == "pass" and row.get("device") == device and row.get("batch_size") == batch
    ]
    by_format = {row.get("format"): row for row in passing}
    wanted = ("torch",) if student_format.startswith("torch") else ("onnx-fp32", "torch")
    return next((by_format[name] for name in wanted if name in by_format), None)


def headline(run: RunData) -> list[HeadlineRow]:
    """One row per passing student bench row that has a teacher row to compare with."""
    teacher_params = run.metrics("teacher").get("params")
    student_params = run.metrics("student").get("params")
    params_ratio = _ratio(teacher_params, student_params)
    rows = []
    for row in run.results:
        if row.get("status") != "pass":
            continue
        device, batch, fmt = str(row.get("device")), int(row.get("batch_size", 1)), artifact_label(row)
        teacher = _teacher_baseline(run, device, batch, fmt)
        if teacher is None:
            continue
        student_top1, teacher_top1 = row.get("top1"), teacher.get("top1")
        delta = None if student_top1 is None or teacher_top1 is None else student_top1 - teacher_top1
        rows.append(
            HeadlineRow(
                device=device,
                batch_size=batch,
                artifact=fmt,
                teacher_artifact=str(teacher.get("format")),
                student_top1=student_top1,
                teacher_top1=teacher_top1,
                top1_delta=delta,
                speedup_p50=_ratio(_p50(teacher), _p50(row)),
                size_ratio=_ratio(teacher.get("size_bytes"), row.get("size_bytes")),
                params_ratio=params_ratio,
                eval_images=(row.get("extra") or {}).get("eval_samples"),
            )
        )
    return rows


# The artifact a run deploys: the most optimised one it made (also what the confusion matrix shows).
# Measured here, the CPU INT8 graph is the one this machine deploys; the TensorRT one stands in for an engine.
DEPLOY_PREFERENCE = (
    "trt-int8", "trt-fp16", "onnx-int8", "onnx-int8-trt", "onnx-fp16", "trt-fp32", "onnx-fp32", "torch",
)


def _deployed(rows: list[HeadlineRow]) -> HeadlineRow:
    """The deployed artifact's row: a board before this machine, the smallest batch; never "whichever was
    fastest" (that flipped between INT8 and FP32 from one noisy bench to the next)."""
    rank = {name: index for index, name in enumerate(DEPLOY_PREFERENCE)}
    def order(row: HeadlineRow) -> tuple[int, bool, int]:
        return rank.get(row.artifact, len(rank)), row.device == "local", row.batch_size

    return min(rows, key=order)


def headline_sentence(rows: list[HeadlineRow]) -> str | None:
    """The one line a team reads first: the deployed student artifact against the teacher."""
    timed = [row for row in rows if row.speedup_p50 is not None]
    if not timed:
        return None
    best = _deployed(timed)
    speed = best.speedup_p50
    parts = [f"{speed:.1f}x faster (p50)" if speed >= 1 else f"{1 / speed:.1f}x slower (p50)"]
    if best.size_ratio is not None:
        parts.append(f"{best.size_ratio:.1f}x smaller")
    accuracy = "" if best.top1_delta is None else f" for {best.top1_delta:+.2f} top-1 points"
    if accuracy and best.eval_images:
        accuracy += f" on {best.eval_images} test images"
    return (
        f"Student {best.artifact} vs teacher {best.teacher_artifact} on {best.device} at batch "
        f"{best.batch_size}: {' and '.join(parts)}{accuracy}."
    )


def headline_table(rows: list[HeadlineRow]):
    """The headline rows as a report table (None when there is nothing to compare)."""
    from cidpipe.report.tables import Table, pct

    if not rows:
        return None

    def times(value: float | None) -> str:
        return "—" if value is None else f"{value:.1f}x"

    def points(value: float | None) -> str:
        return "—" if value is None else f"{value:+.2f}"

    table = Table(
        "Student vs teacher (speed-up and size: teacher / student)",
        ["device", "batch", "student artifact", "vs teacher", "student top-1 %", "teacher top-1 %",
         "top-1 Δ points", "speed-up p50", "size ratio", "params ratio"],
    )  # fmt: skip
    for row in rows:
        table.rows.append(
            [row.device, str(row.batch_size), row.artifact, row.teacher_artifact, pct(row.student_top1),
             pct(row.teacher_top1), points(row.top1_delta), times(row.speedup_p50), times(row.size_ratio),
             times(row.params_ratio)]
        )  # fmt: skip
    return table

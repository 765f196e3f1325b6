"""Build run directories with exactly the lead's layout (runs/<name>/<stage>/manifest.json + recipe.yaml).

The gate and the report only read manifests, so a run directory written here is the real input, not a
mock: the numbers are chosen by each test and asserted back out of the outputs.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from cidpipe.manifest import Artifact, Manifest, manifest_to_json

RECIPE_ID = "a" * 64
ENV = {"cidpipe": "0.1.0", "torch": "2.14.1", "python": "3.11.7", "device": "cpu",
       "git_sha": "0123456789abcdef0123", "hostname": "ci-runner-7"}  # fmt: skip
# The measuring machine as a bench row records it (cidpipe_runtime.host.host_facts).
HOST = {"hostname": "ci-runner-7", "machine": "x86_64", "cpu_model": "AMD EPYC 7763 64-Core Processor",
        "cpu_count": 4, "python": "3.11.7", "numpy": "2.1.3", "onnxruntime": "1.20.1"}  # fmt: skip


def bench_result(
    artifact_format: str,
    top1: float | None,
    p99_ms: float | None,
    *,
    p50_ms: float | None = None,
    size_bytes: int | None = 100_000,
    device: str = "local",
    batch_size: int = 1,
    status: str = "pass",
    error: str | None = None,
    agreement: float | None = 99.5,
    extra: dict[str, Any] | None = None,
    host: dict[str, Any] | None = HOST,
    noisy: bool = False,
    cov: float = 0.02,
) -> dict[str, Any]:
    p50 = p50_ms if p50_ms is not None else (None if p99_ms is None else p99_ms * 0.8)
    latency = None if p99_ms is None else {
        "runs": 100, "mean_ms": p50, "p50_ms": p50, "p90_ms": p99_ms * 0.9, "p99_ms": p99_ms,
        "min_ms": p50 * 0.9, "max_ms": p99_ms * 1.1, "std_ms": 0.01, "cov": cov,
        "p50_ci_low_ms": p50 * 0.98, "p50_ci_high_ms": p50 * 1.02,
    }  # fmt: skip
    suffix = {"onnx-int8": ".int8.onnx", "onnx-fp16": ".fp16.onnx", "torch": ".safetensors"}
    result = {
        "artifact": "student" + suffix.get(artifact_format, ".onnx"), "format": artifact_format,
        "backend": "torch" if artifact_format == "torch" else "onnxruntime",
        "provider": "CPUExecutionProvider",
        "device": device, "batch_size": batch_size, "status": status, "error": error, "top1": top1,
        "top5": None if top1 is None else min(100.0, top1 + 3), "agreement": agreement, "latency": latency,
        "throughput_ips": None if p50 is None else round(1000 * batch_size / p50, 1),
        "size_bytes": size_bytes,
        "peak_mem_bytes": 12_000_000, "threads": 1, "power_w": None, "energy_per_image_mj": None,
        "role": "student", "noisy": noisy, "host": host,
    }  # fmt: skip
    if extra is not None:
        result["extra"] = extra
    return result


DEFAULT_RESULTS = [
    bench_result("torch", 96.4, 0.70, p50_ms=0.50, size_bytes=320_000, agreement=100.0),
    bench_result("onnx-fp32", 96.4, 0.55, p50_ms=0.40, size_bytes=310_000, agreement=100.0),
    bench_result("onnx-int8", 96.1, 0.41, p50_ms=0.25, size_bytes=95_000, agreement=99.7,
                 extra={"governor": "performance", "cpu_mhz": 2400}),
]  # fmt: skip


def history(epochs: int, start_top1: float, end_top1: float) -> list[dict[str, Any]]:
    rows = []
    for epoch in range(epochs):
        top1 = start_top1 + (end_top1 - start_top1) * epoch / max(epochs - 1, 1)
        rows.append({"epoch": epoch, "lr": 0.05, "train_loss": 1.5 / (epoch + 1), "train_top1": top1 - 1,
                     "val_top1": top1, "seconds": 3.2, "parts": {"kd": 0.3, "ce": 0.9}})  # fmt: skip
    return rows


def _manifest(stage: str, name: str, recipe: str, recipe_id: str, metrics: dict[str, Any],
              model: dict[str, Any] | None, config: dict[str, Any], stage_dir: Path) -> str:  # fmt: skip
    """The manifest text the real writer produces, over a real artifact file written into ``stage_dir``."""
    stage_id = hashlib.sha256(f"{stage}{name}{recipe_id}".encode()).hexdigest()
    payload = stage_id.encode() * 64  # 4096 bytes of stage-specific content
    (stage_dir / f"{stage}.bin").write_bytes(payload)
    manifest = Manifest(
        stage=stage, id=stage_id, recipe=recipe, recipe_id=recipe_id, parents={}, config=config,
        artifacts={"model": Artifact(path=f"{stage}.bin", sha256=hashlib.sha256(payload).hexdigest(),
                                     bytes=len(payload))},
        model=model or {}, metrics=metrics, env=ENV,
        created_at="2025-01-01T00:00:00+00:00", finished_at="2025-01-01T00:01:00+00:00",
    )  # fmt: skip
    manifest.digest = manifest.content_digest()
    return manifest_to_json(manifest)


def write_run(
    root: Path,
    name: str = "quickstart",
    *,
    recipe: str = "quickstart",
    recipe_id: str = RECIPE_ID,
    results: list[dict[str, Any]] | None = None,
    reference_top1: float | None = 96.4,
    student_test_top1: float = 96.4,
    student_val_top1: float = 97.1,
    seeds: list[dict[str, Any]] | None = None,
    bias: dict[str, float] | None = None,
    stages: tuple[str, ...] = ("teacher", "student", "bench"),
) -> Path:
    """Write ``root/runs/<name>`` and return it."""
    run_dir = root / "runs" / name
    model = {"arch": "resnet8", "num_classes": 10, "class_names": [str(i) for i in range(10)],
             "input_shape": [3, 32, 32], "mean": [0.5] * 3, "std": [0.25] * 3, "head": "cid"}  # fmt: skip
    student_metrics: dict[str, Any] = {
        "val_top1": student_val_top1,
        "test_top1": student_test_top1,
        "best_epoch": 3,
        "params": 78_000,
        "history": history(4, 60.0, 97.1),
    }
    if seeds is not None:
        student_metrics["seeds"] = seeds
    if bias is not None:
        student_metrics["bias"] = bias
    teacher_metrics = {"val_top1": 98.5, "test_top1": 98.1, "best_epoch": 4, "params": 272_000,
                       "history": history(5, 70.0, 98.5)}  # fmt: skip
    bench_metrics: dict[str, Any] = {"results": DEFAULT_RESULTS if results is None else results}
    if reference_top1 is not None:
        bench_metrics["reference"] = {"format": "torch", "top1": reference_top1}
    per_stage = {
        "teacher": (teacher_metrics, {**model, "arch": "resnet32", "head": "linear"}, {"arch": "resnet32"}),
        "student": (student_metrics, model, {"arch": "resnet8", "method": "cid"}),
        "quantize": ({}, model, {"mode": "static"}),
        "export": ({}, model, {"target": "onnx"}),
        "bench": (bench_metrics, model, {"runs": 100}),
    }
    for stage in stages:
        metrics, stage_model, config = per_stage[stage]
        (run_dir / stage).mkdir(parents=True, exist_ok=True)
        text = _manifest(stage, name, recipe, recipe_id, metrics, stage_model, config, run_dir / stage)
        (run_dir / stage / "manifest.json").write_text(text)
    (run_dir / "recipe.yaml").write_text(
        f"name: {recipe}\ndata:\n  dataset: digits\nstudent:\n  arch: resnet8\n"
    )
    return run_dir

"""What one benchmarked (artifact, backend, device, batch size) produced.

Status, in the spirit of ultralytics' benchmark table:
- ``pass``: the artifact loaded, ran and (when a reference is given) agrees with the FP32 PyTorch
  model on at least ``BenchConfig.min_agreement`` percent of the top-1 predictions.
- ``exported-but-failed``: the artifact exists and loads, but inference raised, produced non-finite
  logits, or its top-1 agreement is below ``min_agreement`` (not for a QAT variant: its weights were trained
  after export, so its agreement is reported only). Measured numbers are kept when there are any.
- ``failed``: the artifact could not be used at all (missing file, corrupt model, missing dependency,
  unavailable execution provider); nothing was measured. ``failure`` says ``"device"`` when the reason
  was the device (unreachable, host key, missing remote python/onnxruntime, a runtime that answered
  garbage): such rows make ``cidpipe bench`` exit 8 unless ``bench.tolerate_device_failures`` is set.

Measurement fields: ``latency`` holds the protocol's stats (cidpipe_runtime.latency.STAT_KEYS: p50 with
its 95 % bootstrap interval ``p50_ci_low_ms``/``p50_ci_high_ms``, ``cov``, ...); ``noisy`` is True when
``cov`` exceeded bench.cov_warning; ``host`` is the machine that measured (cidpipe_runtime.host); the
peak memory is that of the process while this artifact ran (``extra["peak_mem"]`` says the scope);
``energy_per_image_mj`` is board energy per image (per query / batch size), Jetson only.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # keep this module importable without torch for the device layer
    from torch import nn

STATUSES = ("pass", "exported-but-failed", "failed")
DEVICE_FAILURE = "device"


@dataclass
class ArtifactSpec:
    """One thing to benchmark: a file (ONNX, engine) or an in-memory torch module."""

    name: str  # e.g. "student.onnx"
    format: str  # "torch", "onnx-fp32", "onnx-int8", "onnx-fp16", "trt-fp16", ...
    path: Path | None = None
    module: nn.Module | None = None
    backend: str | None = None  # default: derived from format (see backend_for_format)
    role: str = "student"  # whose model: the deployed one ("student", or "teacher" alone) or "teacher"
    # Weights trained after export (a QAT variant): its agreement with the FP32 PyTorch model measures
    # that training, not the conversion, so it is reported but not held to bench.min_agreement.
    retrained: bool = False
    # Which of several artifacts of one format this is: "trt" for the INT8 graph made for TensorRT
    # (model.int8-trt.onnx) next to the CPU one; None when the format alone names it.
    variant: str | None = None


def backend_for_format(fmt: str) -> str:
    if fmt.startswith("torch"):
        return "torch"
    if fmt.startswith("onnx"):
        return "onnxruntime"
    if fmt.startswith("trt"):
        return "tensorrt"
    raise ValueError(f"unknown artifact format {fmt!r}; expected torch, onnx-* or trt-*")


@dataclass
class BenchResult:
    artifact: str
    format: str
    backend: str
    provider: str | None
    device: str
    batch_size: int
    status: str
    error: str | None = None
    top1: float | None = None
    top5: float | None = None
    agreement: float | None = None
    latency: dict[str, float] | None = None
    throughput_ips: float | None = None
    size_bytes: int | None = None
    peak_mem_bytes: int | None = None
    threads: int | None = None
    power_w: float | None = None
    energy_per_image_mj: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    failure: str | None = None  # "device" when the device, not the artifact, made this row fail
    noisy: bool = False  # latency CoV above bench.cov_warning: the numbers are less trustworthy
    host: dict[str, Any] | None = None  # cidpipe_runtime.host.host_facts of the measuring machine
    role: str = "student"  # whose artifact the row measured (see ArtifactSpec.role)
    variant: str | None = None  # see ArtifactSpec.variant; gate/rundir.artifact_label names the row by it

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BenchResult:
        data = dict(data)
        if "energy_mj_per_inference" in data:  # rows written before it was per image: it was per batch
            legacy = data.pop("energy_mj_per_inference")
            if legacy is not None and data.get("energy_per_image_mj") is None:
                data["energy_per_image_mj"] = legacy / max(1, int(data.get("batch_size") or 1))
        data.pop("slower_than_fp32", None)  # the bench stage's annotation of the JSON row, recomputed there
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown BenchResult field(s): {', '.join(sorted(unknown))}")
        return cls(**data)

"""The recipe's ``bench`` section."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from cidpipe.sections import Section


class BenchConfig(Section):
    enabled: bool = True
    devices: list[str] = Field(
        ["local"], description="names from the device inventory; 'local' always exists"
    )
    inventory: Path | None = Field(
        None, description="devices.yaml; default ./devices.yaml or ~/.config/cidpipe"
    )
    backends: list[str] = Field(["torch", "onnxruntime"], description="torch, onnxruntime, tensorrt")
    teacher: bool = Field(
        True,
        description="with a student, measure the teacher too (torch, and its ONNX when exported): the "
        "student-vs-teacher speed, size and accuracy",
    )
    batch_sizes: list[int] = Field([1], min_length=1)
    warmup_runs: int = Field(10, ge=0)
    warmup_seconds: float = Field(0.2, ge=0)
    runs: int = Field(100, ge=1)
    min_seconds: float = Field(0.5, ge=0)
    threads: int = Field(1, ge=1, description="ONNX Runtime intra-op / torch threads on CPU")
    max_eval_samples: int | None = Field(
        None, ge=1, description="cap the accuracy pass at this many test images, every k-th so each class "
        "keeps its share (None = whole test split)"
    )
    cov_warning: float = Field(
        0.1, gt=0, description="warn when the latency coefficient of variation exceeds this"
    )
    ort_provider: str = Field(
        "CPUExecutionProvider", description="ONNX Runtime execution provider for local runs"
    )
    torch_compile: bool = Field(
        False, description="also bench torch.compile of the torch artifact (compiled before timing)"
    )
    tolerate_device_failures: bool = Field(
        False,
        description="rows that failed because of a device (unreachable, host key, missing remote "
        "python) do not fail the bench; when EVERY row failed that way it still exits 8",
    )
    min_agreement: float = Field(
        90.0,
        ge=0,
        le=100,
        description="top-1 agreement (%) with the FP32 PyTorch model below which an artifact is "
        "'exported-but-failed'",
    )

    @field_validator("batch_sizes")
    @classmethod
    def _positive_batch_sizes(cls, sizes: list[int]) -> list[int]:
        bad = [size for size in sizes if size < 1]
        if bad:
            raise ValueError(f"batch size {bad[0]} is not a positive number of images; use e.g. [1, 8, 32]")
        return sizes

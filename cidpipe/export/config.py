"""The recipe's ``export`` section."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from cidpipe.sections import Section

# ONNX opsets torch.onnx can export (torch.onnx._constants ONNX_MIN_OPSET..ONNX_MAX_OPSET in torch 2.14, the
# newest torch pyproject allows). Checked here so a recipe or --opset outside it fails when it is read, not
# after the exporter silently fell back to another opset; cidpipe.export.torch2onnx checks again against
# the torch that is installed (older ones stop at 20).
MIN_OPSET, MAX_OPSET = 7, 23


class ParityConfig(Section):
    max_abs_diff: float = Field(1e-4, gt=0, description="largest allowed |logit_onnx - logit_torch| (FP32)")
    min_agreement: float = Field(100.0, ge=0, le=100, description="top-1 agreement in percent")
    samples: int = Field(512, ge=1, description="held-out images used for the check")


class TensorRTConfig(Section):
    precision: Literal["fp32", "fp16", "int8"] = "fp16"
    workspace_mb: int = Field(1024, ge=16)
    timing_cache: Path | None = None
    min_batch: int = Field(1, ge=1)
    opt_batch: int = Field(1, ge=1)
    max_batch: int = Field(32, ge=1)


class ExportConfig(Section):
    enabled: bool = True
    targets: list[str] = Field(["onnx"], description="export targets from `cidpipe export --list`: onnx, trt")
    teacher: bool = Field(
        True,
        description="with a student, export the teacher too (teacher.onnx), so the bench measures both and "
        "the report states what distillation bought",
    )
    opset: int | None = Field(
        None, description=f"ONNX opset {MIN_OPSET}..{MAX_OPSET}; default chosen per target"
    )
    dynamic_batch: bool = True
    parity: ParityConfig = ParityConfig()
    trt: TensorRTConfig = TensorRTConfig()

    @field_validator("opset")
    @classmethod
    def _exportable_opset(cls, opset: int | None) -> int | None:
        if opset is not None and not MIN_OPSET <= opset <= MAX_OPSET:
            raise ValueError(
                f"opset {opset} cannot be exported by torch.onnx; choose {MIN_OPSET}..{MAX_OPSET} "
                "(17, the default, is what TensorRT 8.6 parses)"
            )
        return opset

"""The recipe's ``export`` section."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from cidpipe.sections import Section


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
    targets: list[str] = Field(["onnx"], description="formats from `cidpipe export --list`: onnx, trt")
    opset: int | None = Field(None, description="default chosen per target")
    dynamic_batch: bool = True
    parity: ParityConfig = ParityConfig()
    trt: TensorRTConfig = TensorRTConfig()

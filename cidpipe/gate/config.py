"""The recipe's ``gate`` section (also loadable from a separate YAML file)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from cidpipe.sections import Section


class LatencyLimit(Section):
    device: str = "local"
    artifact: str = Field("*", description="artifact format name or * for all")
    batch_size: int = 1
    max_p99_ms: float = Field(..., gt=0)


class GateConfig(Section):
    enabled: bool = True
    min_top1: float | None = Field(None, description="minimum test top-1 (percent) of every artifact")
    max_drop: float | None = Field(
        None, ge=0, description="maximum top-1 points below the FP32 PyTorch model"
    )
    latency: list[LatencyLimit] = Field(default_factory=list)
    max_size_mb: float | None = Field(None, gt=0, description="maximum artifact size in MB (10^6 bytes)")
    max_bias_gap: float | None = Field(
        None, description="maximum aligned-minus-conflicting accuracy (biased data)"
    )
    baseline: Path | None = Field(
        None, description="baseline JSON; relative paths are relative to the gate file"
    )
    accuracy_tolerance: float = Field(0.5, ge=0, description="points of top-1 a run may lose vs the baseline")
    latency_tolerance: float = Field(0.25, ge=0, description="relative p99 slack vs the baseline (noise)")

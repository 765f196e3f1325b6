"""The recipe's ``gate`` section (also loadable from a separate YAML file)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from cidpipe.sections import Section

LatencyMetric = Literal["p50", "p99"]


class LatencyLimit(Section):
    """An absolute latency bound: ``metric`` of the matching rows must stay <= ``max_ms * (1 + tolerance)``.

    ``max_p99_ms: X`` is the older spelling of ``metric: p99, max_ms: X`` and still accepted.
    """

    device: str = "local"
    artifact: str = Field("*", description="artifact format name or * for all")
    batch_size: int = 1
    metric: LatencyMetric = Field(
        "p99", description="p50 (the median: stable on a shared machine) or p99 (the tail)"
    )
    max_ms: float | None = Field(None, gt=0, description="the bound on `metric`, in ms")
    max_p99_ms: float | None = Field(None, gt=0, description="older spelling of metric: p99, max_ms")
    tolerance: float = Field(0.0, ge=0, description="relative slack on max_ms (0.1 = 10 % over is still ok)")

    @model_validator(mode="after")
    def _one_bound(self) -> LatencyLimit:
        if self.max_p99_ms is not None:
            if self.max_ms is not None:
                raise ValueError("give max_ms or max_p99_ms, not both")
            if self.metric != "p99":
                raise ValueError(f"max_p99_ms bounds p99 but metric is {self.metric}; use max_ms")
        elif self.max_ms is None:
            raise ValueError("a latency entry needs max_ms (with metric: p50 or p99) or max_p99_ms")
        return self

    @property
    def bound_ms(self) -> float:
        return float(self.max_ms if self.max_ms is not None else self.max_p99_ms)  # type: ignore[arg-type]


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
    latency_tolerance: float = Field(0.25, ge=0, description="relative slack vs the baseline latency (noise)")
    # p50 by default: on a shared CI machine the p99 of identical benches moved 10x (4.68 vs 0.64 ms), so a
    # p99 baseline either flaps or, recorded on a noisy run, lets a 5x slowdown through.
    latency_metric: LatencyMetric = Field(
        "p50", description="what the baseline latency comparison uses: p50 (stable) or p99 (the tail)"
    )
    noisy_latency: Literal["flag", "fail"] = Field(
        "flag",
        description="a latency check of a row marked noisy (CoV above bench.cov_warning): flag it in the "
        "result (still judged) or fail it (rerun on a quiet machine)",
    )

"""The recipe's ``quantize`` section."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from cidpipe.sections import Section


class CalibrationConfig(Section):
    method: Literal["minmax", "entropy", "percentile"] = "minmax"
    samples: int = Field(256, ge=1, description="images drawn from the training split (never test)")
    percentile: float = Field(99.999, gt=0, le=100)
    seed: int = 0


class QuantizeConfig(Section):
    enabled: bool = True
    mode: Literal["int8", "fp16"] = "int8"
    target: Literal["cpu", "trt"] = Field(
        "cpu", description="cpu: U8 activations/S8 weights; trt: S8/S8 symmetric"
    )
    per_channel: bool = True
    reduce_range: bool = Field(
        False,
        description="7-bit weights: only for x86 CPUs without VNNI (AVX2/AVX-512 U8S8 saturation); "
        "VNNI, ARM and TensorRT targets want False",
    )
    float_stem: bool | None = Field(
        None,
        description="keep the convolution that reads the image in float; default: on for target cpu, "
        "where ORT's INT8 kernel for a 3-channel input is slower than float (measured 39 vs 15 us on a "
        "resnet8), off for trt",
    )
    calibration: CalibrationConfig = CalibrationConfig()
    max_drop: float | None = Field(
        None, ge=0, description="top-1 points allowed below the FP32 artifact on validation; None = no budget"
    )
    max_sensitivity_candidates: int = Field(
        24,
        ge=1,
        description="budget fallback: at most this many Conv/Gemm/MatMul nodes are probed, output end first",
    )
    max_float_nodes: int = Field(
        8, ge=1, description="budget fallback: give up (exit 6) once this many nodes are kept in float"
    )

"""The recipe's ``quantize`` section."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, SerializationInfo, SerializerFunctionWrapHandler, model_serializer

from cidpipe.sections import Section, for_display


class CalibrationConfig(Section):
    method: Literal["minmax", "entropy", "percentile"] = "minmax"
    samples: int = Field(256, ge=1, description="images drawn from the training split (never test)")
    percentile: float = Field(99.999, gt=0, le=100)
    seed: int = 0


class QATConfig(Section):
    """Quantization-aware fine-tuning of the distilled student (quantize/qat.py)."""

    enabled: bool | Literal["auto"] = Field(
        False,
        description="true: always fine-tune the INT8 artifact with fake quantization; auto: only when PTQ "
        "misses quantize.max_drop; false: PTQ only",
    )
    epochs: int = Field(4, ge=1, description="fine-tuning epochs (with the run's distillation loss)")
    lr: float = Field(
        0.00025,
        gt=0,
        description="peak LR (cosine), low: the weights only move to the grid, and they are BatchNorm-"
        "folded, so SGD steps are large relative to small channels (measured on MobileNetV2 CID students: "
        "0.002 blew up in 8 steps, also without fake quantization; 0.001 marginal; 0.0005 blew up 1 of 3 "
        "per-tensor seeds on a 100-class task; 0.00025 for 4 epochs stable in every seed, BENCHMARKS.md)",
    )
    scales: Literal["best", "trained", "recalibrated"] = Field(
        "best",
        description="activation scales of the exported graph: trained (EMA of the fine-tune's ranges), "
        "recalibrated (MinMax over the calibration images with the fine-tuned weights) or best (both "
        "measured on validation, the better kept)",
    )
    augment: bool = Field(
        False,
        description="fine-tune on augmented training images (data.augment's crop and flip); off by default: "
        "measured on a MobileNetV2 CID student, the augmented fine-tune fell from 69 to 52 % validation "
        "top-1 in its first epoch (KD term 1.86 vs 0.21), the un-augmented one rose to 70 %",
    )
    regressor_samples: int = Field(
        2048, ge=16, description="training images the feature regressor (CID/FitNet) is refitted on"
    )


Mode = Literal["int8", "fp16"]
Target = Literal["cpu", "trt"]


class QuantizeConfig(Section):
    enabled: bool = True
    mode: Mode = Field("int8", description="the one variant to make (see modes for several)")
    modes: list[Mode] | None = Field(
        None,
        min_length=1,
        description="several variants side by side, e.g. [int8, fp16]: model.int8.onnx and model.fp16.onnx "
        "(overrides mode)",
    )
    target: Target = Field("cpu", description="cpu: U8 activations/S8 weights; trt: S8/S8 symmetric")
    targets: list[Target] | None = Field(
        None,
        min_length=1,
        description="INT8 for several runtimes side by side, e.g. [cpu, trt]: model.int8.onnx (U8S8) and "
        "model.int8-trt.onnx (S8S8, TensorRT's Q/DQ rules) (overrides target)",
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
        8, ge=0, description="budget fallback: give up (exit 6) once this many nodes are kept in float; 0 "
        "keeps every node INT8 (no search: a miss is exit 6, or QAT with quantize.qat.enabled: auto)"
    )
    qat: QATConfig = Field(default_factory=QATConfig, description="quantization-aware fine-tuning")

    @model_serializer(mode="wrap")
    def _omit_unset_lists(
        self, handler: SerializerFunctionWrapHandler, info: SerializationInfo
    ) -> dict[str, Any]:
        # Stage ids hash the dumped section: unset, the variant lists stay out of it, so quantize stages
        # finished before they existed keep their ids.
        dumped = handler(self)
        if for_display(info):
            return dumped
        for key in ("modes", "targets"):
            if dumped.get(key) is None:
                dumped.pop(key, None)
        if self.qat.enabled is False:  # QAT off changes nothing the stage makes: keep it out of the id
            dumped.pop("qat", None)
        return dumped

    def variants(self) -> list[tuple[str, Mode, Target]]:
        """(artifact key, mode, target) of every artifact to make: ``int8``, ``int8-trt``, ``fp16``."""
        out: list[tuple[str, Mode, Target]] = []
        for mode in dict.fromkeys(self.modes or [self.mode]):
            if mode == "fp16":
                out.append(("fp16", "fp16", "cpu"))
                continue
            for target in dict.fromkeys(self.targets or [self.target]):
                out.append(("int8" if target == "cpu" else "int8-trt", "int8", target))
        return out

    def int8_key_for(self, target: Target) -> str | None:
        """The artifact key of the INT8 variant a ``target`` runtime should use (its own, else any)."""
        keys = {t: key for key, mode, t in self.variants() if mode == "int8"}
        return keys.get(target) or next(iter(keys.values()), None)

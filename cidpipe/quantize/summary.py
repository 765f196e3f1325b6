"""What the quantize stage says of an INT8 variant: one success line, and the warnings that foretell a later
stage's verdict (the bench's agreement floor) or say what the numbers cannot show (a budget finer than one
validation image, an INT8 artifact hardly smaller than FP32). The warnings are also kept in the variant's
metrics (``warnings``), so ``--json`` and the manifest carry them too."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cidpipe.gate.numbers import bytes_to_mb, format_value

# An INT8 artifact at more than this share of the FP32 bytes keeps so much in float that it is unlikely to
# be faster (a fully quantized graph is about a quarter).
_MOSTLY_FLOAT = 0.6


def judged_on_test_later(recipe) -> bool:
    """Whether this run's bench or gate will measure the artifacts on the test split (said after the
    validation numbers, so nobody mistakes them for the final ones)."""
    return bool(recipe.bench.enabled or recipe.gate.enabled)


def _then(judged_later: bool) -> str:
    return "; the gate and bench judge the test split" if judged_later else ""


def fp16_line(info: dict[str, Any], recipe) -> str:
    """What the FP16 conversion cost on validation, and its size."""
    size = (f"{format_value(bytes_to_mb(info['bytes_fp16']), 'MB')} "
            f"(FP32 {format_value(bytes_to_mb(info['bytes_fp32']), 'MB')})")
    if info.get("top1_fp16") is None:
        return f"no validation split, drop measured by the bench; {size}"
    max_drop = recipe.quantize.max_drop
    budget = f" of the {max_drop:g}-point budget" if max_drop is not None else ""
    return (
        f"validation top-1 {info['top1_fp32']:.2f}% -> {info['top1_fp16']:.2f}% (drop {info['drop']:.2f} "
        f"points{budget}, {info['val_images']} images), top-1 agreement with FP32 {info['agreement']:.1f}%; "
        f"{size}{_then(judged_on_test_later(recipe))}"
    )


def success_line(
    info: dict[str, Any], max_drop: float | None, fp32: Path, int8: Path, target: str = "cpu",
    judged_later: bool = True,
) -> str:
    """The numbers are validation numbers: the gate's ``max_drop`` and the bench judge the test split."""
    size = f"{_mb(int8)} (FP32 {_mb(fp32)}"
    # The TensorRT graph keeps its weights in float behind Q/DQ pairs (TensorRT folds them into INT8 when it
    # builds the engine), so its file is not smaller; the engine is.
    size += "; weights stay float behind Q/DQ until TensorRT builds the engine)" if target == "trt" else ")"
    if info.get("top1_int8") is None:
        return f"no validation split, drop measured by the bench; {size}"
    budget = f" of the {max_drop:g}-point budget" if max_drop is not None else ""
    return (
        f"validation top-1 {info['top1_fp32']:.2f}% -> {info['top1_int8']:.2f}% (drop {info['drop']:.2f} "
        f"points{budget}, {info['val_images']} images), top-1 agreement with FP32 {info['agreement']:.1f}%; "
        f"in float: {_in_float(info)}; {size}{_then(judged_later)}"
    )


def int8_warnings(recipe, info: dict[str, Any], target: str, fp32: Path, int8: Path) -> list[str]:
    warnings = []
    agreement, floor = info.get("agreement"), recipe.bench.min_agreement
    # A QAT graph is a further-trained model: the bench reports its agreement without holding it to the floor.
    if agreement is not None and recipe.bench.enabled and agreement < floor and info.get("path") != "qat":
        # The drop can meet the budget while many predictions flip (right and wrong answers trade places).
        warnings.append(
            f"INT8 for {target} agrees with the FP32 model on {agreement:.1f}% of validation predictions, "
            f"below bench.min_agreement {floor:g}%: the bench will likely mark it exported-but-failed; lower "
            "bench.min_agreement if the accuracy drop is what matters to you"
        )
    images, max_drop = info.get("val_images"), recipe.quantize.max_drop
    if images and max_drop is not None and max_drop < 100.0 / images:
        warnings.append(
            f"with {images} validation images one image is {100.0 / images:.2f} points, so the "
            f"{max_drop:g}-point budget allows not one more wrong prediction; use more validation images "
            "(data.val_fraction) or a larger quantize.max_drop"
        )
    ratio = int8.stat().st_size / max(1, fp32.stat().st_size)
    if target == "cpu" and ratio > _MOSTLY_FLOAT:  # a TensorRT graph's size says nothing (see success_line)
        warnings.append(
            f"INT8 for {target} is {ratio:.0%} of the FP32 size ({_in_float(info)} kept in float): expect "
            "little or no speed-up; the bench measures it"
        )
    return warnings


def _in_float(info: dict[str, Any]) -> str:
    parts = []
    if info.get("float_stem"):
        parts.append("the stem convolution")
    sensitive = len(info.get("nodes_in_float") or [])
    if sensitive:
        parts.append(f"{sensitive} sensitive node{'s' if sensitive != 1 else ''}")
    return " and ".join(parts) or "nothing"


def _mb(path: Path) -> str:
    # Written as the bench table, gate and report write sizes.
    return format_value(bytes_to_mb(path.stat().st_size), "MB")

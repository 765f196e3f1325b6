"""The ``quantize`` stage: INT8 (ONNX Runtime static QDQ, calibrated on training images) or FP16 from the
exported FP32 ONNX. The top-1 cost is measured on the validation split, never on test."""

from __future__ import annotations

import numpy as np

from cidpipe.config import Recipe
from cidpipe.data.registry import load_dataset
from cidpipe.manifest import StageWork, read_manifest
from cidpipe.quantize.fp16 import convert_fp16
from cidpipe.quantize.int8 import quantize_static_int8
from cidpipe.stages.common import StageOptions, StageResult, discard_on_error, reuse_if_cached, stage_dir

SUFFIX = {"int8": "model.int8.onnx", "fp16": "model.fp16.onnx"}


def quantize_work(recipe: Recipe, export_id: str) -> StageWork:
    return StageWork(
        stage_dir(recipe, "quantize"),
        "quantize",
        recipe.quantize.model_dump(mode="json"),
        {"export": export_id},
        recipe=recipe.name,
        recipe_id=recipe.recipe_id(),
    )


def calibration_images(recipe: Recipe, bundle) -> np.ndarray:
    """A seeded random sample of the training split (un-augmented), so calibration never sees test data."""
    calib = recipe.quantize.calibration
    count = min(calib.samples, len(bundle.train))
    order = np.random.default_rng(calib.seed).permutation(len(bundle.train))[:count]
    images, _ = bundle.train.subset(np.sort(order)).to_numpy()
    return images


def run_quantize(recipe: Recipe, options: StageOptions) -> StageResult:
    export_dir = stage_dir(recipe, "export")
    exported = read_manifest(export_dir)
    work = quantize_work(recipe, exported.id)
    cached = reuse_if_cached(work, options)
    if cached:
        return cached
    fp32 = exported.artifact_path(export_dir, "onnx")
    cfg = recipe.quantize
    with discard_on_error(work.open()):
        out = work.path(SUFFIX[cfg.mode])
        if cfg.mode == "int8":
            bundle = load_dataset(recipe.data)
            # The paper protocol (val_fraction 0) has no validation split: the drop is then not measured
            # here (never on test); the bench measures every artifact on the test split instead.
            val = bundle.val.to_numpy() if len(bundle.val) else None
            info = quantize_static_int8(fp32, out, calibration_images(recipe, bundle), cfg, val=val)
            measured = (
                f"validation top-1 {info['top1_fp32']:.2f}% -> {info['top1_int8']:.2f}% "
                f"(drop {info['drop']:.2f} points, {len(info['nodes_in_float'])} nodes kept in float)"
                if info.get("top1_int8") is not None
                else "no validation split, drop measured by the bench"
            )
            options.out.print(
                f"INT8 ({cfg.calibration.method}, {info['calibration']['samples']} calibration images): "
                + measured
            )
        else:
            info = convert_fp16(fp32, out)
        work.add_artifact("onnx", out.name)
        manifest = work.commit(
            metrics={**info, "format": f"onnx-{cfg.mode}"}, model=exported.model, device="cpu"
        )
    return StageResult(work.stage, work.stage_dir, manifest, cached=False)

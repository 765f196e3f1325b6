"""The ``quantize`` stage: INT8 (ONNX Runtime static QDQ, calibrated on training images) and/or FP16 from the
exported FP32 ONNX, one artifact per variant side by side (``quantize.modes`` / ``quantize.targets``). The
top-1 cost is measured on the validation split, never on test.

With ``quantize.qat.enabled`` (true, or auto when PTQ misses ``quantize.max_drop``) an INT8 variant is
fine-tuned with fake quantization and the run's distillation loss (quantize/qat.py); the stage then also
reads the student and teacher stages. Each INT8 variant's metrics say which path made the artifact
(``path``: ptq | qat) and hold every measured drop (``ptq``, ``qat``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from cidpipe.config import Recipe
from cidpipe.manifest import StageWork
from cidpipe.stages.contract import Built, Parent, Stage, StageOptions


def calibration_images(recipe: Recipe, bundle) -> np.ndarray:
    """A seeded random sample of the training split (un-augmented), so calibration never sees test data."""
    calib = recipe.quantize.calibration
    count = min(calib.samples, len(bundle.train))
    order = np.random.default_rng(calib.seed).permutation(len(bundle.train))[:count]
    images, _ = bundle.train.subset(np.sort(order)).to_numpy()
    return images


class QuantizeStage(Stage):
    name, verb = "quantize", "quantize"
    makes_deployables = True

    def enabled(self, recipe: Recipe) -> bool:
        return recipe.quantize.enabled and recipe.export.enabled

    def parents(self, recipe: Recipe) -> tuple[str, ...]:
        # Only when QAT can run: a PTQ-only recipe keeps its parents, and with them its stage id.
        return ("export", "student", "teacher") if qat_possible(recipe) else ("export",)

    def validate(self, recipe: Recipe) -> None:
        from cidpipe.errors import ConfigError

        qat = recipe.quantize.qat
        modes = sorted({mode for _, mode, _ in recipe.quantize.variants()})
        if qat.enabled is True and "int8" not in modes:
            raise ConfigError(
                f"quantize.qat fine-tunes an INT8 model and this recipe makes {', '.join(modes)} only; use "
                "--mode int8 (or quantize.modes: [int8, fp16]), or drop --qat"
            )
        if qat.enabled is True and not qat_possible(recipe):
            raise ConfigError(
                "quantize.qat.enabled is true but the recipe distils no student (QAT fine-tunes "
                "the distilled student against its teacher); add a student or use auto/false"
            )

    def config(self, recipe: Recipe) -> dict[str, Any]:
        return recipe.quantize.model_dump(mode="json")

    def recipe_view(self, config: dict[str, Any]) -> dict[str, Any]:
        return {"quantize": config}

    def build(
        self, recipe: Recipe, work: StageWork, inputs: dict[str, Parent], options: StageOptions
    ) -> Built:
        exported = inputs["export"]
        fp32 = exported.manifest.artifact_path(exported.dir, "model")
        variants: dict[str, dict[str, Any]] = {}
        bundle = None
        for key, mode, target in recipe.quantize.variants():
            name = f"model.{key}.onnx"
            bundle = _dataset(recipe) if bundle is None else bundle  # loaded once, for every variant
            if mode == "int8":
                info = _int8(recipe, fp32, work.path(name), bundle, target, options, inputs, work)
            else:
                info = _fp16(recipe, fp32, work.path(name), bundle, options)
            info["format"] = f"onnx-{mode}"
            variants[key] = info
            work.add_artifact(
                key, name, format=f"onnx-{mode}", role=exported.manifest.artifacts["model"].role
            )
        first = next(iter(variants.values()))
        # The first variant's numbers stay at the top level, where `cidpipe quantize` and older readers look.
        metrics = {**first, "variants": variants}
        return Built(metrics, model=exported.manifest.model, device="cpu")


def qat_possible(recipe: Recipe) -> bool:
    """QAT is asked for (true or auto) and the run has a distilled student and its teacher to use."""
    return (
        recipe.quantize.qat.enabled is not False
        and recipe.student is not None
        and recipe.distill.enabled
        and any(mode == "int8" for _, mode, _ in recipe.quantize.variants())
    )


def qat_unavailable_message(miss: str, enabled) -> str:
    """A PTQ miss where QAT was asked for (auto) but cannot run: the miss's own "try qat.enabled: auto" would
    send the user to a setting already on, so it says why QAT did not run instead."""
    from cidpipe.quantize.budget import QAT_HINT

    return (f"{miss.replace(QAT_HINT, '')}; quantize.qat.enabled is {enabled} but this recipe distils no "
            "student to fine-tune (QAT needs the student and teacher stages)")


def _dataset(recipe: Recipe):
    """The data the variants are calibrated and judged on (validation; never test)."""
    from cidpipe.data.registry import load_dataset

    return load_dataset(recipe.data)


def _fp16(recipe: Recipe, fp32, out, bundle, options: StageOptions) -> dict[str, Any]:
    from cidpipe.quantize.fp16 import convert_fp16, measure_fp16
    from cidpipe.quantize.summary import fp16_line

    info = convert_fp16(fp32, out)
    val = bundle.val.to_numpy() if len(bundle.val) else None
    info.update(measure_fp16(fp32, out, val, recipe.quantize.max_drop))
    options.log.print(f"FP16: {fp16_line(info, recipe)}", highlight=False)
    return info


def _int8(
    recipe: Recipe, fp32, out, bundle, target: str, options: StageOptions, inputs=None, work=None
) -> dict[str, Any]:
    from cidpipe.errors import ParityError
    from cidpipe.quantize.int8 import quantize_static_int8

    cfg = recipe.quantize.model_copy(update={"mode": "int8", "target": target})
    # The paper protocol (val_fraction 0) has no validation split: the drop is then not measured here
    # (never on test); the bench measures every artifact on the test split instead.
    val = bundle.val.to_numpy() if len(bundle.val) else None
    calib = calibration_images(recipe, bundle)
    qat = qat_possible(recipe) and inputs is not None and "student" in inputs
    try:
        miss = "return" if qat else "raise"
        info = quantize_static_int8(fp32, out, calib, cfg, val=val, on_budget_miss=miss)
    except ParityError as err:
        if qat or cfg.qat.enabled is False:
            raise
        raise ParityError(qat_unavailable_message(str(err), cfg.qat.enabled)) from None
    if qat:
        from cidpipe.quantize.qat_stage import ptq_then_qat

        info = ptq_then_qat(recipe, cfg, fp32, out, info, bundle, calib, val, inputs, work, target, options)
    if val is not None:
        from cidpipe.quantize.int8 import top1_agreement

        info["agreement"] = top1_agreement(fp32, out, val[0], target)
        info["val_images"] = len(val[0])
    from cidpipe.quantize.summary import int8_warnings, judged_on_test_later, success_line

    options.log.print(
        f"INT8 for {target} ({cfg.calibration.method}, {info['calibration']['samples']} calibration images): "
        + success_line(info, cfg.max_drop, Path(fp32), Path(out), target, judged_on_test_later(recipe)),
        highlight=False,
    )
    warnings = int8_warnings(recipe, info, target, Path(fp32), Path(out))
    for warning in warnings:
        options.log.print(f"[yellow]warning[/]: {warning}", highlight=False)
    if warnings:
        info["warnings"] = warnings
    return info


QUANTIZE = QuantizeStage()


def run_quantize(recipe: Recipe, options: StageOptions):
    """Quantize the exported model into every variant the recipe asks for."""
    from cidpipe.pipeline import run_stage

    return run_stage(QUANTIZE, recipe, options)

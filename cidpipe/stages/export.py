"""The ``export`` stage: the deployable student (or the teacher when there is none) as one ONNX file,
checked for parity with PyTorch on held-out test images before it is published."""

from __future__ import annotations

from pathlib import Path

from cidpipe.config import Recipe
from cidpipe.data.registry import load_dataset
from cidpipe.export.metadata import make_metadata
from cidpipe.export.parity import check_parity
from cidpipe.export.torch2onnx import export_onnx
from cidpipe.manifest import StageWork, read_manifest
from cidpipe.modelio import load_stage_model
from cidpipe.stages.common import StageOptions, StageResult, discard_on_error, reuse_if_cached, stage_dir


def model_stage(recipe: Recipe) -> str:
    """The stage whose model gets exported: the student when the recipe distills one."""
    return "distill" if recipe.student is not None and recipe.distill.enabled else "train"


def export_work(recipe: Recipe, parent_id: str) -> StageWork:
    config = {
        "opset": recipe.export.opset,
        "dynamic_batch": recipe.export.dynamic_batch,
        "parity": recipe.export.parity.model_dump(mode="json"),
    }
    parent = stage_dir(recipe, model_stage(recipe)).name
    return StageWork(
        stage_dir(recipe, "export"),
        "export",
        config,
        {parent: parent_id},
        recipe=recipe.name,
        recipe_id=recipe.recipe_id(),
    )


def run_export(recipe: Recipe, options: StageOptions, source_dir: Path | None = None) -> StageResult:
    source_dir = Path(source_dir) if source_dir else stage_dir(recipe, model_stage(recipe))
    source = read_manifest(source_dir)
    work = export_work(recipe, source.id)
    cached = reuse_if_cached(work, options)
    if cached:
        return cached
    module, manifest = load_stage_model(source_dir)
    spec = manifest.model or {}
    bundle = load_dataset(recipe.data)
    held_out, _ = bundle.test.to_numpy(max_samples=recipe.export.parity.samples)
    with discard_on_error(work.open()):
        path = export_onnx(
            module,
            tuple(spec["input_shape"]),
            work.path("model.onnx"),
            opset=recipe.export.opset,
            target="onnx",
            dynamic_batch=recipe.export.dynamic_batch,
            metadata=make_metadata(
                class_names=spec.get("class_names"),
                input_shape=spec["input_shape"],
                mean=spec.get("mean"),
                std=spec.get("std"),
                recipe_id=recipe.recipe_id(),
                arch=spec.get("arch"),
                head=(spec.get("head") or {}).get("head", "plain"),
            ),
        )
        work.add_artifact("onnx", path.name)
        parity = check_parity(
            module,
            path,
            held_out,
            max_abs_diff=recipe.export.parity.max_abs_diff,
            min_agreement=recipe.export.parity.min_agreement,
        )
        options.out.print(
            f"exported {path.name}: parity max |diff| {parity['max_abs_diff']:.2e}, "
            f"top-1 agreement {parity['top1_agreement']:.2f}% on {parity['n']} test images"
        )
        manifest_out = work.commit(
            metrics={"parity": parity, "format": "onnx-fp32"}, model=spec, device="cpu"
        )
    return StageResult(work.stage, work.stage_dir, manifest_out, cached=False)

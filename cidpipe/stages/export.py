"""The ``export`` stage: the deployable model (the student, or the teacher when there is none) as one ONNX
file, checked for parity with PyTorch on held-out test images before it is published. With a student, the
teacher is exported next to it (``export.teacher``) so the bench can say what distillation bought."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.markup import escape

from cidpipe.config import Recipe
from cidpipe.manifest import StageWork
from cidpipe.stages.contract import Built, Parent, Stage, StageOptions


def model_stage(recipe: Recipe) -> str:
    """The stage whose model is deployed: the student when the recipe distills one."""
    return "student" if recipe.student is not None and recipe.distill.enabled else "teacher"


def exports_teacher(recipe: Recipe) -> bool:
    return recipe.export.teacher and model_stage(recipe) == "student"


class ExportStage(Stage):
    name, verb = "export", "export"
    makes_deployables = True

    def enabled(self, recipe: Recipe) -> bool:
        return recipe.export.enabled

    def parents(self, recipe: Recipe) -> tuple[str, ...]:
        return (model_stage(recipe), "teacher") if exports_teacher(recipe) else (model_stage(recipe),)

    def config(self, recipe: Recipe) -> dict[str, Any]:
        config = {
            "opset": recipe.export.opset,
            "dynamic_batch": recipe.export.dynamic_batch,
            "parity": recipe.export.parity.model_dump(mode="json"),
        }
        if exports_teacher(recipe):
            config["teacher"] = True
        return config

    def recipe_view(self, config: dict[str, Any]) -> dict[str, Any]:
        return {"export": config}

    def build(
        self, recipe: Recipe, work: StageWork, inputs: dict[str, Parent], options: StageOptions
    ) -> Built:
        from cidpipe.stages.train import teacher_data

        deployed = inputs[model_stage(recipe)]
        role = deployed.manifest.stage
        data = teacher_data(recipe) if role == "teacher" else recipe.data
        held_out = _held_out(data, recipe.export.parity.samples)
        parity = {role: _export_one(recipe, deployed.dir, work.path("model.onnx"), held_out, options)}
        work.add_artifact("model", "model.onnx", format="onnx-fp32", role=role)
        if exports_teacher(recipe):  # checked on the images as the teacher sees them (teacher.input)
            path = work.path("teacher.onnx")
            teacher_held_out = _held_out(teacher_data(recipe), recipe.export.parity.samples)
            parity["teacher"] = _export_one(recipe, inputs["teacher"].dir, path, teacher_held_out, options)
            work.add_artifact("teacher", "teacher.onnx", format="onnx-fp32", role="teacher")
        # ``parity`` at the top level stays the deployed model's (what the gate and report read).
        metrics = {"parity": parity[role], "parity_by_role": parity}
        return Built(metrics, model=deployed.manifest.model, device="cpu")


def _held_out(data, samples: int):
    from cidpipe.data.registry import load_dataset

    images, _ = load_dataset(data).test.evenly_spaced(samples).to_numpy()
    return images


def _export_one(recipe: Recipe, source_dir: Path, out: Path, held_out, options: StageOptions) -> dict:
    from cidpipe.export.metadata import make_metadata
    from cidpipe.export.parity import check_parity
    from cidpipe.export.torch2onnx import export_onnx
    from cidpipe.modelio import load_stage_model

    module, manifest = load_stage_model(source_dir)
    spec = manifest.model or {}
    shape = "x".join(map(str, spec.get("input_shape", ())))
    options.log.print(f"[dim]export:[/] {manifest.stage} ({escape(str(spec.get('arch', '?')))}, {shape}) to "
                      f"{out.name}, then a parity check on {len(held_out)} test images", highlight=False)
    if str(spec.get("arch", "")).startswith("timm:"):
        # Re-parameterisable timm networks (MobileOne, FastViT, RepGhost, ...) train multi-branch and deploy
        # as single convolutions: fold them before export, the numerically equivalent inference form.
        from timm.utils import reparameterize_model

        module = reparameterize_model(module)
    export_onnx(
        module,
        tuple(spec["input_shape"]),
        out,
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
    parity = check_parity(
        module,
        out,
        held_out,
        max_abs_diff=recipe.export.parity.max_abs_diff,
        min_agreement=recipe.export.parity.min_agreement,
    )
    options.log.print(
        f"exported {manifest.stage} as {out.name}: parity max |diff| {parity['max_abs_diff']:.2e}, "
        f"top-1 agreement {parity['top1_agreement']:.2f}% on {parity['n']} test images"
    )
    return parity


EXPORT = ExportStage()


def run_export(recipe: Recipe, options: StageOptions, source_dir: Path | None = None):
    """Export the run's deployable model (from ``source_dir`` instead when given: any teacher/student)."""
    from cidpipe.pipeline import run_stage

    sources = {model_stage(recipe): Path(source_dir)} if source_dir else None
    return run_stage(EXPORT, recipe, options, sources=sources)

"""The ``student`` stage (``cidpipe distill``): a student trained from the teacher with CID or a baseline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cidpipe.config import Recipe
from cidpipe.errors import ConfigError, ModelError
from cidpipe.manifest import StageWork
from cidpipe.stages.contract import Built, Parent, StageOptions
from cidpipe.stages.training_stage import TrainingStage


class StudentStage(TrainingStage):
    name, verb = "student", "distill"

    def enabled(self, recipe: Recipe) -> bool:
        return recipe.student is not None and recipe.distill.enabled

    def parents(self, recipe: Recipe) -> tuple[str, ...]:
        return ("teacher",)

    def config(self, recipe: Recipe) -> dict[str, Any]:
        if recipe.student is None:
            raise ConfigError("the recipe has no 'student' section; add student.model.arch to distill")
        method = recipe.distill.method
        method_section = getattr(recipe.distill, method, None)
        config = {
            "data": recipe.data.model_dump(mode="json"),
            "student": recipe.student.model_dump(mode="json"),
            "method": method,
            "method_config": method_section.model_dump(mode="json")
            if hasattr(method_section, "model_dump")
            else method_section,
        }
        if recipe.distill.reuse_teacher_outputs:  # only when on, so existing stage ids stay valid
            config["reuse_teacher_outputs"] = True
        return self.with_weights_sha(config, recipe.student.model, "student_weights_sha256")

    def recipe_view(self, config: dict[str, Any]) -> dict[str, Any]:
        # method_config is the section of the method each side was made with: kd's keys under distill.kd.
        view = dict(config)
        distill = {"method": view.pop("method", None)}
        distill[str(distill["method"])] = view.pop("method_config", None)
        if "reuse_teacher_outputs" in view:
            distill["reuse_teacher_outputs"] = view.pop("reuse_teacher_outputs")
        return super().recipe_view(view) | {"distill": distill}

    def build(
        self, recipe: Recipe, work: StageWork, inputs: dict[str, Parent], options: StageOptions
    ) -> Built | None:
        from cidpipe.data.registry import load_dataset
        from cidpipe.distill.registry import build_distiller
        from cidpipe.modelio import load_stage_model
        from cidpipe.models import model_info
        from cidpipe.models.sources import build_from_config
        from cidpipe.stages.fit_stage import fit_seeds, place_on_device, warn_about_missing_classes
        from cidpipe.stages.train import log_source

        teacher_dir = inputs["teacher"].dir
        teacher, teacher_manifest = load_stage_model(teacher_dir)
        student_cfg = recipe.student
        info = model_info(student_cfg.model.arch)
        bundle = place_on_device(load_dataset(recipe.data), recipe, options)
        warn_about_missing_classes(bundle, options)
        teacher = fit_teacher_input(teacher, teacher_manifest.model or {}, bundle, teacher_dir, options)
        teacher.to(options.device)
        channels = bundle.input_shape[0]
        _, source = build_from_config(student_cfg.model, bundle.num_classes, in_channels=channels)
        log_source(source, "student", options)

        def make(seed: int):
            # Built under the seed fit_seeds has just set; with model.weights / pretrained every seed starts
            # from the same weights (its classifier reset when the class count differs).
            student, _ = build_from_config(student_cfg.model, bundle.num_classes, in_channels=channels)
            return build_distiller(
                recipe.distill.method,
                student,
                teacher,
                recipe.distill,
                num_classes=bundle.num_classes,
                epochs=student_cfg.train.epochs,
            )

        return fit_seeds(
            work,
            bundle,
            student_cfg.train,
            recipe,
            arch=student_cfg.model.arch,
            base_lr=student_cfg.train.lr or info.default_lr,
            make_distiller=make,
            options=options,
            reuse_teacher_outputs=recipe.distill.reuse_teacher_outputs,
            source=source,
        )


def fit_teacher_input(teacher, spec: dict[str, Any], bundle, teacher_dir: Path, options: StageOptions):
    """The teacher, fed the student's images: as is when it takes them, else behind an InputAdapter that
    resizes and re-normalises them to what the teacher was trained on (its manifest says what)."""
    from cidpipe.models import InputAdapter

    if spec.get("num_classes") != bundle.num_classes:
        raise ModelError(
            f"teacher in {teacher_dir} predicts {spec.get('num_classes')} classes but the data has "
            f"{bundle.num_classes}; retrain the teacher on this dataset"
        )
    shape, mean, std = list(spec.get("input_shape", [])), spec.get("mean"), spec.get("std")
    same = shape == list(bundle.input_shape) and mean == list(bundle.mean) and std == list(bundle.std)
    if same or not shape:
        return teacher
    options.log.print(
        f"teacher input: the student's {list(bundle.input_shape)} images are resized to {shape} and "
        "re-normalised with the teacher's statistics"
    )
    return InputAdapter(teacher, (shape[1], shape[2]), bundle.mean, bundle.std, mean, std)


STUDENT = StudentStage()


def run_distill(recipe: Recipe, options: StageOptions, teacher_dir: Path | None = None):
    """Distill the student (from ``teacher_dir`` instead of the run's teacher when given)."""
    from cidpipe.pipeline import run_stage

    sources = {"teacher": Path(teacher_dir)} if teacher_dir else None
    return run_stage(STUDENT, recipe, options, sources=sources)

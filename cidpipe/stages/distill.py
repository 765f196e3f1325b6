"""The ``distill`` stage: a student trained from the teacher stage's model with CID or a baseline."""

from __future__ import annotations

from pathlib import Path

from cidpipe.config import Recipe
from cidpipe.data.registry import load_dataset
from cidpipe.distill.registry import build_distiller
from cidpipe.errors import ConfigError, ModelError
from cidpipe.manifest import StageWork, sha256_file
from cidpipe.modelio import load_stage_model, load_state_strict, load_weights
from cidpipe.models import build_model, model_info
from cidpipe.preflight import preflight_training
from cidpipe.stages.common import StageOptions, StageResult, reuse_if_cached, stage_dir
from cidpipe.stages.fit_stage import fit_and_publish, place_on_device


def student_config(recipe: Recipe) -> dict:
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
    checkpoint = recipe.student.model.checkpoint
    if checkpoint is not None and checkpoint.is_file():  # the weights, not just their path, make the id
        config["student_weights_sha256"] = sha256_file(checkpoint)
    return config


def student_work(recipe: Recipe, teacher_id: str) -> StageWork:
    return StageWork(
        stage_dir(recipe, "distill"),
        "student",
        student_config(recipe),
        {"teacher": teacher_id},
        recipe=recipe.name,
        recipe_id=recipe.recipe_id(),
    )


def run_distill(recipe: Recipe, options: StageOptions, teacher_dir: Path | None = None) -> StageResult:
    preflight_training(recipe)
    teacher_dir = Path(teacher_dir) if teacher_dir else stage_dir(recipe, "train")
    teacher, teacher_manifest = load_stage_model(teacher_dir)
    work = student_work(recipe, teacher_manifest.id)
    cached = reuse_if_cached(work, options)
    if cached:
        return cached
    student_cfg = recipe.student
    info = model_info(student_cfg.model.arch)
    bundle = place_on_device(load_dataset(recipe.data), recipe, options)
    spec = teacher_manifest.model or {}
    if spec.get("num_classes") != bundle.num_classes:
        raise ModelError(
            f"teacher in {teacher_dir} predicts {spec.get('num_classes')} classes but "
            f"{recipe.data.name} has {bundle.num_classes}; retrain the teacher on this dataset"
        )
    if list(spec.get("input_shape", [])) != list(bundle.input_shape):
        raise ModelError(
            f"teacher in {teacher_dir} takes input {spec.get('input_shape')} but the data is "
            f"{list(bundle.input_shape)}"
        )
    teacher.to(options.device)

    def make(seed: int):
        student = build_model(student_cfg.model.arch, bundle.num_classes, in_channels=bundle.input_shape[0])
        if student_cfg.model.checkpoint is not None:  # start from these weights instead of a fresh init
            path = student_cfg.model.checkpoint
            load_state_strict(student, load_weights(path), str(path), student_cfg.model.arch)
        return build_distiller(
            recipe.distill.method,
            student,
            teacher,
            recipe.distill,
            num_classes=bundle.num_classes,
            epochs=student_cfg.train.epochs,
        )

    make(student_cfg.train.seeds[0])  # fail on a bad method or student before any directory is created
    return fit_and_publish(
        work,
        bundle,
        student_cfg.train,
        arch=student_cfg.model.arch,
        base_lr=student_cfg.train.lr or info.default_lr,
        make_distiller=make,
        options=options,
        batch_size=recipe.data.batch_size,
        eval_batch_size=recipe.data.eval_batch_size,
        augment=recipe.data.augment,
        reuse_teacher_outputs=recipe.distill.reuse_teacher_outputs,
    )

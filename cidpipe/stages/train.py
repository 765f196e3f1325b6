"""The ``train`` stage: cross-entropy training of the teacher (or any registry model).

With ``teacher.model.checkpoint`` set, the stage imports those weights instead of training (evaluated and
published the same way), so the distill stage always reads a teacher manifest.
"""

from __future__ import annotations

from cidpipe.config import Recipe
from cidpipe.data.registry import load_dataset
from cidpipe.distill.registry import build_distiller
from cidpipe.manifest import StageWork, sha256_file
from cidpipe.modelio import load_state_strict, load_weights, model_spec, save_weights
from cidpipe.models import build_model, model_info
from cidpipe.preflight import preflight_training
from cidpipe.stages.common import StageOptions, StageResult, reuse_if_cached, stage_dir
from cidpipe.stages.fit_stage import evaluate_splits, fit_and_publish, place_on_device
from cidpipe.training.evaluate import top1_accuracy


def teacher_work(recipe: Recipe) -> StageWork:
    config = {"data": recipe.data.model_dump(mode="json"), "teacher": recipe.teacher.model_dump(mode="json")}
    checkpoint = recipe.teacher.model.checkpoint
    if checkpoint is not None and checkpoint.is_file():
        config["teacher_weights_sha256"] = sha256_file(checkpoint)
    return StageWork(
        stage_dir(recipe, "train"), "teacher", config, {}, recipe=recipe.name, recipe_id=recipe.recipe_id()
    )


def run_train(recipe: Recipe, options: StageOptions) -> StageResult:
    preflight_training(recipe)
    work = teacher_work(recipe)
    cached = reuse_if_cached(work, options)
    if cached:
        return cached
    teacher = recipe.teacher
    info = model_info(teacher.model.arch)  # unknown arch fails here, before any data is read
    bundle = place_on_device(load_dataset(recipe.data), recipe, options)
    in_channels = bundle.input_shape[0]
    if teacher.model.checkpoint is not None:
        return _import_teacher(recipe, work, bundle, options)

    def make(seed: int):
        model = build_model(teacher.model.arch, bundle.num_classes, in_channels=in_channels)
        return build_distiller(
            "ce", model, None, recipe.distill, num_classes=bundle.num_classes, epochs=teacher.train.epochs
        )

    return fit_and_publish(
        work,
        bundle,
        teacher.train,
        arch=teacher.model.arch,
        base_lr=teacher.train.lr or info.default_lr,
        make_distiller=make,
        options=options,
        batch_size=recipe.data.batch_size,
        eval_batch_size=recipe.data.eval_batch_size,
        augment=recipe.data.augment,
    )


def _import_teacher(recipe: Recipe, work: StageWork, bundle, options: StageOptions) -> StageResult:
    arch, path = recipe.teacher.model.arch, recipe.teacher.model.checkpoint
    model = build_model(arch, bundle.num_classes, in_channels=bundle.input_shape[0])
    load_state_strict(model, load_weights(path), str(path), arch)
    model.eval().to(options.device)
    work.open()
    save_weights(model, work.path("model.safetensors"))
    work.add_artifact("model", "model.safetensors")
    params = sum(p.numel() for p in model.parameters())
    metrics = {
        "val_top1": top1_accuracy(model, bundle.val, device=options.device) if len(bundle.val) else None,
        **evaluate_splits(model, bundle, options.device, recipe.data.eval_batch_size),
        "params": params,
        "imported_from": str(path),
        "data": bundle.describe(),
    }
    manifest = work.commit(
        metrics=metrics, model=model_spec(arch, bundle, {"head": "plain"}, params), device=options.device
    )
    options.out.print(f"imported teacher weights from {path}: test top-1 {metrics['test_top1']:.2f}%")
    return StageResult(work.stage, work.stage_dir, manifest, cached=False)

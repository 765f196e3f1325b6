"""The ``teacher`` stage (``cidpipe train``): cross-entropy training of the teacher, or importing it.

With ``teacher.model.weights`` set (a registry, timm, torchvision or python: model in its library's own
layout) and the classifier matching the dataset's classes, the stage imports those weights instead of
training (evaluated and published the same way), so the student stage always reads a teacher manifest. With
``pretrained: true``, or weights whose classifier had another class count (the head is then reset), the
teacher is fine-tuned from them with ``teacher.train``. ``teacher.input`` gives the teacher its own input size
and statistics (a 224 px ImageNet-normalised teacher for a 160 px student).
"""

from __future__ import annotations

from typing import Any

from cidpipe.config import Recipe
from cidpipe.manifest import StageWork
from cidpipe.stages.contract import Built, Parent, StageOptions
from cidpipe.stages.training_stage import TrainingStage


def teacher_data(recipe: Recipe):
    """The data section as the teacher sees it: the recipe's, with ``teacher.input`` size and statistics."""
    if recipe.teacher.input is None:
        return recipe.data
    return recipe.data.model_copy(update=recipe.teacher.input.overrides())


def imports_as_is(source: dict[str, Any]) -> bool:
    """Weights given and the head kept: the teacher is imported (evaluated, never trained)."""
    return bool(source.get("weights")) and not source.get("head_reset")


class TeacherStage(TrainingStage):
    name, verb = "teacher", "train"

    def config(self, recipe: Recipe) -> dict[str, Any]:
        config = {
            "data": recipe.data.model_dump(mode="json"),
            "teacher": recipe.teacher.model_dump(mode="json"),
        }
        return self.with_weights_sha(config, recipe.teacher.model, "teacher_weights_sha256")

    def build(
        self, recipe: Recipe, work: StageWork, inputs: dict[str, Parent], options: StageOptions
    ) -> Built | None:
        from cidpipe.data.registry import load_dataset
        from cidpipe.distill.registry import build_distiller
        from cidpipe.models import model_info
        from cidpipe.models.sources import build_from_config
        from cidpipe.stages.fit_stage import fit_seeds, place_on_device, warn_about_missing_classes

        teacher = recipe.teacher
        info = model_info(teacher.model.arch)  # unknown arch fails here, before any data is read
        bundle = place_on_device(load_dataset(teacher_data(recipe)), recipe, options)
        warn_about_missing_classes(bundle, options)
        channels = bundle.input_shape[0]
        model, source = build_from_config(teacher.model, bundle.num_classes, in_channels=channels)
        if imports_as_is(source):
            return _import_teacher(recipe, work, bundle, model, source, options)
        log_source(source, "teacher", options)
        if source.get("weights") or source.get("pretrained"):
            _say_how_long_the_fine_tune_is(teacher.train, options)

        def make(seed: int):
            # Built again under the seed fit_seeds has just set: a fresh init is the seed's own, and every
            # seed starts from the same loaded weights.
            fresh, _ = build_from_config(teacher.model, bundle.num_classes, in_channels=channels)
            return build_distiller(
                "ce", fresh, None, recipe.distill, num_classes=bundle.num_classes, epochs=teacher.train.epochs
            )

        return fit_seeds(
            work,
            bundle,
            teacher.train,
            recipe,
            arch=teacher.model.arch,
            base_lr=teacher.train.lr or info.default_lr,
            make_distiller=make,
            options=options,
            source=source,
        )


def log_source(source: dict[str, Any], role: str, options: StageOptions) -> None:
    """Say where a model's weights came from, and that its head was reset when it was."""
    if source.get("weights"):
        options.log.print(f"{role}: weights from {source['weights']} ({source.get('weights_layout')} layout)")
    elif source.get("pretrained"):
        options.log.print(
            f"{role}: the library's pretrained weights ({source.get('pretrained_tag', 'default')})"
        )
    if source.get("head_reset"):
        options.log.print(
            f"[yellow]{role}: the checkpoint's classifier has {source.get('checkpoint_classes')} classes; "
            "the head was re-initialised for this dataset and is trained[/]"
        )


def _say_how_long_the_fine_tune_is(train, options: StageOptions) -> None:
    """Imported weights that are trained further (a reset head, or pretrained): say for how long, loudest
    when it is the from-scratch default (240 epochs) the recipe never asked for."""
    if "epochs" in train.model_fields_set:
        epochs = f"{train.epochs} epoch{'s' * (train.epochs != 1)}"
        options.log.print(f"teacher: fine-tuned for {epochs} (teacher.train.epochs)")
        return
    options.log.print(
        f"[yellow]teacher: fine-tuned for {train.epochs} epochs, the from-scratch default; set "
        "teacher.train.epochs (and lr) for a short fine-tune, e.g. --set teacher.train.epochs=10[/]"
    )


def near_chance_warning(top1: float | None, classes: int) -> str | None:
    """An imported teacher that scores near chance is almost always fed other images than it was trained
    on (input size, mean/std, resize/crop); a distillation from it would be wasted, so say what to check."""
    chance = 100.0 / max(classes, 1)
    if top1 is None or classes < 2 or top1 > 1.5 * chance:
        return None
    return (
        f"the imported teacher scores {top1:.2f} % on {classes} classes (chance {chance:.1f} %): check that "
        "teacher.input (input_size, mean, std) and data.transforms.eval (resize, crop_pct) match how it was "
        "trained"
    )


def _import_teacher(recipe: Recipe, work: StageWork, bundle, model, source, options: StageOptions) -> Built:
    from cidpipe.modelio import model_spec, save_weights
    from cidpipe.stages.fit_stage import evaluate_splits
    from cidpipe.training.accuracy import top1_accuracy

    arch, path = recipe.teacher.model.arch, recipe.teacher.model.weights
    model.eval().to(options.device)
    save_weights(model, work.path("model.safetensors"))
    work.add_artifact("model", "model.safetensors", format="torch", role="teacher")
    params = sum(p.numel() for p in model.parameters())
    metrics = {
        "val_top1": top1_accuracy(model, bundle.val, device=options.device) if len(bundle.val) else None,
        **evaluate_splits(model, bundle, options.device, recipe.data.eval_batch_size),
        "params": params,
        "imported_from": str(path),
        "data": bundle.describe(),
    }
    # What the weights were judged on, in the recipe's terms: a teacher trained at 224 px and measured on
    # 32 px images loses accuracy without being near chance, and nothing else would say why.
    side = "x".join(str(d) for d in bundle.input_shape[1:])
    hint = (" (teacher.input)" if recipe.teacher.input is not None else
            " (data.input_size, data.mean/std); if it was trained at another size or normalisation, set "
            "teacher.input to those")
    options.log.print(
        f"imported teacher weights from {path}: test top-1 {metrics['test_top1']:.2f}% on {side} px "
        f"images{hint}",
        highlight=False,
        soft_wrap=True,  # one line in a log, however long the path
    )
    warning = near_chance_warning(metrics["test_top1"], bundle.num_classes)
    if warning:
        options.log.print(f"[yellow]warning[/]: {warning}", highlight=False)
        metrics["warnings"] = [warning]
    spec = model_spec(arch, bundle, {"head": "plain"}, params, source=source)
    return Built(metrics, model=spec, device=options.device)


TEACHER = TeacherStage()


def run_train(recipe: Recipe, options: StageOptions):
    """Train (or import) the recipe's teacher; the finished stage when it is cached."""
    from cidpipe.pipeline import run_stage

    return run_stage(TEACHER, recipe, options)

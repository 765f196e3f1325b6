"""`cidpipe eval`: accuracy of a model or artifact on the validation and test splits (and bias flavours)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from cidpipe.config import Recipe
from cidpipe.data.registry import load_dataset
from cidpipe.errors import UsageError
from cidpipe.modelio import check_model_classes, load_stage_model
from cidpipe.stages.export import model_stage


def predictor_for(recipe: Recipe, target: Path | None):
    """(name, predict(x: np.ndarray) -> logits, classes) for a stage directory, an ONNX file, or the run's
    model; ``classes`` is what the model says it predicts (``num_classes`` / ``class_names``, when known)."""
    if target is not None and target.suffix == ".onnx":
        from cidpipe.export.ort_run import make_session, output_classes, run_onnx
        from cidpipe.export.torch2onnx import read_onnx_metadata

        session = make_session(target, providers=("CPUExecutionProvider",), threads=1)
        names = read_onnx_metadata(target).get("class_names")
        count = output_classes(session)
        classes = {"class_names": names, **({"num_classes": count} if count is not None else {})}
        return target.name, lambda x: run_onnx(session, x), classes
    directory = target or recipe.run_dir() / model_stage(recipe)
    module, manifest = load_stage_model(directory)

    def predict(x: np.ndarray) -> np.ndarray:
        from cidpipe.export.parity import torch_logits

        return torch_logits(module, x)

    spec = manifest.model or {}
    return f"{manifest.stage} ({spec.get('arch')})", predict, spec


def is_teacher(recipe: Recipe, target: Path | None) -> bool:
    """Whether ``target`` is the run's teacher: its stage directory, or a file a stage of the run recorded
    with the teacher role (export/teacher.onnx). The teacher sees its own input size and statistics."""
    from cidpipe.manifest import MANIFEST_NAME, read_manifest

    if target is None:
        return model_stage(recipe) == "teacher"
    target = Path(target).resolve()
    if target.is_dir():
        return (target / MANIFEST_NAME).is_file() and read_manifest(target).stage == "teacher"
    stage_dir = target.parent
    if not (stage_dir / MANIFEST_NAME).is_file():
        return False
    manifest = read_manifest(stage_dir)
    return any(
        (stage_dir / art.path).resolve() == target and art.role == "teacher"
        for art in manifest.artifacts.values()
    )


def evaluation_data(recipe: Recipe, target: Path | None):
    """The data section ``target`` is evaluated on: the teacher's view for the teacher, else the recipe's."""
    from cidpipe.stages.train import teacher_data

    return teacher_data(recipe) if is_teacher(recipe, target) else recipe.data


def evaluate(
    recipe: Recipe, target: Path | None, *, linear_probes: list[str] | None = None, device: str = "cpu"
) -> dict[str, Any]:
    """Top-1 on val/test (and bias flavours); ``linear_probes`` adds a linear probe per named dataset."""
    if target is not None and not target.exists():
        raise UsageError(f"{target} does not exist; pass a stage directory, a run directory or an .onnx file")
    if linear_probes:
        from cidpipe.study.probe import resolve_probe_dataset

        linear_probes = [resolve_probe_dataset(name) for name in linear_probes]  # fail before any work
        if target is not None and target.suffix == ".onnx":
            raise UsageError("--linear-probe needs a stage directory (it reads features), not an .onnx file")
    name, predict, classes = predictor_for(recipe, target)
    bundle = load_dataset(evaluation_data(recipe, target))
    check_model_classes(name, classes, bundle)
    result: dict[str, Any] = {"model": name, "dataset": recipe.data.name}
    for split_name, split in (("val", bundle.val), ("test", bundle.test), *bundle.extra_test.items()):
        if len(split) == 0:  # no validation split under the paper protocol (val_fraction 0)
            continue
        x, y = split.to_numpy()
        result[f"{split_name}_top1"] = float((predict(x).argmax(1) == y).mean() * 100.0)
    if "aligned_top1" in result and "conflicting_top1" in result:
        result["bias_gap"] = result["aligned_top1"] - result["conflicting_top1"]
    if linear_probes:
        result["linear_probe"] = probe_results(recipe, target, linear_probes, device)
    return result


def probe_results(recipe: Recipe, target: Path | None, datasets: list[str], device: str) -> dict[str, Any]:
    """Linear-probe test top-1 (percent) of the target's frozen features on each dataset."""
    from cidpipe.study.probe import linear_probe

    module, manifest = load_stage_model(target or recipe.run_dir() / model_stage(recipe))
    if manifest.stage not in ("teacher", "student"):
        raise UsageError(f"--linear-probe needs a teacher or student stage, not the {manifest.stage} stage")
    return {name: linear_probe(module, manifest.model or {}, name, device=device) for name in datasets}

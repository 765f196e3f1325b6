"""`cidpipe eval`: accuracy of a model or artifact on the validation and test splits (and bias flavours)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from cidpipe.config import Recipe
from cidpipe.data.registry import load_dataset
from cidpipe.errors import UsageError
from cidpipe.modelio import load_stage_model
from cidpipe.stages.common import stage_dir
from cidpipe.stages.export import model_stage


def predictor_for(recipe: Recipe, target: Path | None):
    """(name, predict(x: np.ndarray) -> logits) for a stage directory, an ONNX file, or the run's model."""
    if target is not None and target.suffix == ".onnx":
        from cidpipe.export.ort_run import make_session, run_onnx

        session = make_session(target, providers=("CPUExecutionProvider",), threads=1)
        return target.name, lambda x: run_onnx(session, x)
    directory = target or stage_dir(recipe, model_stage(recipe))
    module, manifest = load_stage_model(directory)

    def predict(x: np.ndarray) -> np.ndarray:
        from cidpipe.export.parity import torch_logits

        return torch_logits(module, x)

    return f"{manifest.stage} ({(manifest.model or {}).get('arch')})", predict


def evaluate(recipe: Recipe, target: Path | None) -> dict[str, Any]:
    if target is not None and not target.exists():
        raise UsageError(f"{target} does not exist; pass a stage directory, a run directory or an .onnx file")
    name, predict = predictor_for(recipe, target)
    bundle = load_dataset(recipe.data)
    result: dict[str, Any] = {"model": name, "dataset": recipe.data.name}
    for split_name, split in (("val", bundle.val), ("test", bundle.test), *bundle.extra_test.items()):
        x, y = split.to_numpy()
        result[f"{split_name}_top1"] = float((predict(x).argmax(1) == y).mean() * 100.0)
    if "aligned_top1" in result and "conflicting_top1" in result:
        result["bias_gap"] = result["aligned_top1"] - result["conflicting_top1"]
    return result

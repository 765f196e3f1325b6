"""Which artifacts of a run the bench measures, read from the stage manifests (never guessed from names)."""

from __future__ import annotations

from cidpipe.bench.result import ArtifactSpec
from cidpipe.config import Recipe
from cidpipe.manifest import MANIFEST_NAME, read_manifest
from cidpipe.modelio import load_stage_model
from cidpipe.stages.common import stage_dir
from cidpipe.stages.export import model_stage


def run_artifacts(recipe: Recipe) -> tuple[list[ArtifactSpec], dict[str, str]]:
    """(artifacts, parent ids): the FP32 PyTorch model first (the reference), then every file artifact."""
    model_dir = stage_dir(recipe, model_stage(recipe))
    module, model_manifest = load_stage_model(model_dir)
    role = model_dir.name
    artifacts = [ArtifactSpec(f"{role} (torch)", "torch", module=module)]
    parents = {role: model_manifest.id}
    for verb in ("export", "quantize", "trt"):
        directory = stage_dir(recipe, verb) if verb != "trt" else recipe.run_dir() / "trt"
        if not (directory / MANIFEST_NAME).is_file() or not _enabled(recipe, verb):
            continue
        manifest = read_manifest(directory)
        fmt = manifest.metrics.get("format", "onnx-fp32")
        key = "engine" if verb == "trt" else "onnx"
        path = manifest.artifact_path(directory, key)
        artifacts.append(ArtifactSpec(f"{directory.name}/{path.name}", fmt, path=path))
        parents[directory.name] = manifest.id
    return artifacts, parents


def _enabled(recipe: Recipe, verb: str) -> bool:
    if verb == "export":
        return recipe.export.enabled
    if verb == "quantize":
        return recipe.quantize.enabled
    return "trt" in recipe.export.targets

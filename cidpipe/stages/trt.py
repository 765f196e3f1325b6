"""The ``trt`` stage: a TensorRT engine built here through the TensorRT Python API.

The source is the INT8 QDQ model when the engine precision is int8 (explicit quantization), else the FP32
ONNX. Where TensorRT is not importable the stage fails with one line pointing at building on the device
(`cidpipe bench --device NAME` runs trtexec on the board with the same flags).
"""

from __future__ import annotations

from cidpipe.config import Recipe
from cidpipe.errors import UsageError
from cidpipe.export.onnx2trt import build_engine, import_tensorrt
from cidpipe.manifest import StageWork, read_manifest
from cidpipe.stages.common import StageOptions, StageResult, discard_on_error, reuse_if_cached, stage_dir


def source_verb(recipe: Recipe) -> str:
    return "quantize" if recipe.export.trt.precision == "int8" else "export"


def trt_work(recipe: Recipe, source_id: str) -> StageWork:
    return StageWork(
        recipe.run_dir() / "trt",
        "trt",
        recipe.export.trt.model_dump(mode="json"),
        {source_verb(recipe): source_id},
        recipe=recipe.name,
        recipe_id=recipe.recipe_id(),
    )


def run_trt(recipe: Recipe, options: StageOptions) -> StageResult:
    verb = source_verb(recipe)
    source_dir = stage_dir(recipe, verb)
    if verb == "quantize" and (not recipe.quantize.enabled or recipe.quantize.mode != "int8"):
        raise UsageError(
            "export.trt.precision is int8 but the recipe does not quantize to int8; "
            "set quantize.mode: int8 (TensorRT builds INT8 from the QDQ model)"
        )
    source = read_manifest(source_dir)
    work = trt_work(recipe, source.id)
    cached = reuse_if_cached(work, options)
    if cached:
        return cached
    import_tensorrt()  # a clear MissingDependency before any directory is created
    onnx_path = source.artifact_path(source_dir, "onnx")
    with discard_on_error(work.open()):
        engine = work.path("model.engine")
        info = build_engine(
            onnx_path, engine, recipe.export.trt, input_shape=tuple(source.model["input_shape"])
        )
        work.add_artifact("engine", engine.name)
        work.add_artifact("engine_info", f"{engine.name}.json")
        manifest = work.commit(
            metrics={**info, "format": f"trt-{recipe.export.trt.precision}"},
            model=source.model,
            device=options.device,
        )
    return StageResult(work.stage, work.stage_dir, manifest, cached=False)

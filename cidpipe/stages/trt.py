"""The ``trt`` stage (``cidpipe export --target trt``): a TensorRT engine built here through the TensorRT
Python API, or on a board with trtexec (``--device NAME``, for machines without TensorRT).

The source is the INT8 QDQ model when the engine precision is int8 (explicit quantization; the S8S8
``int8-trt`` variant when the recipe made one), else the FP32 ONNX. Where TensorRT is not importable the
stage fails with one line pointing at building on the device.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cidpipe.config import Recipe
from cidpipe.errors import ConfigError, UsageError
from cidpipe.manifest import StageWork
from cidpipe.stages.contract import Built, Parent, Stage, StageOptions

TARGET = "trt"  # the export target (cidpipe/export/formats.py family) this stage makes


def source_stage(recipe: Recipe) -> str:
    return "quantize" if recipe.export.trt.precision == "int8" else "export"


def source_key(recipe: Recipe) -> str:
    """The artifact of the source stage the engine is built from."""
    if source_stage(recipe) == "quantize":
        return recipe.quantize.int8_key_for("trt") or "int8"
    return "model"


def wants_engine(recipe: Recipe) -> bool:
    return recipe.export.enabled and TARGET in recipe.export.targets


class TensorRTStage(Stage):
    name, verb = "trt", "export --target trt"
    makes_deployables = True

    def enabled(self, recipe: Recipe) -> bool:
        return wants_engine(recipe)

    def parents(self, recipe: Recipe) -> tuple[str, ...]:
        return (source_stage(recipe),)

    def config(self, recipe: Recipe) -> dict[str, Any]:
        return recipe.export.trt.model_dump(mode="json")

    def recipe_view(self, config: dict[str, Any]) -> dict[str, Any]:
        return {"export": {"trt": config}}

    def validate(self, recipe: Recipe) -> None:
        if source_stage(recipe) == "quantize" and not (
            recipe.quantize.enabled and recipe.quantize.int8_key_for("trt")
        ):
            raise ConfigError(
                "export.trt.precision is int8 but the recipe does not quantize to int8; "
                "set quantize.mode: int8 (TensorRT builds INT8 from the QDQ model)"
            )

    def build(
        self, recipe: Recipe, work: StageWork, inputs: dict[str, Parent], options: StageOptions
    ) -> Built:
        from cidpipe.export.onnx2trt import build_engine, import_tensorrt

        import_tensorrt()  # a clear MissingDependency naming the on-device alternative
        source = inputs[source_stage(recipe)]
        onnx_path = source.manifest.artifact_path(source.dir, source_key(recipe))
        engine = work.path("model.engine")
        info = build_engine(
            onnx_path, engine, recipe.export.trt, input_shape=tuple(source.manifest.model["input_shape"])
        )
        fmt = f"trt-{recipe.export.trt.precision}"
        role = source.manifest.artifacts[source_key(recipe)].role
        work.add_artifact("engine", engine.name, format=fmt, role=role)
        work.add_artifact("engine_info", f"{engine.name}.json")
        return Built({**info, "format": fmt}, model=source.manifest.model, device=options.device)


TRT = TensorRTStage()


def run_trt(recipe: Recipe, options: StageOptions):
    """Build the TensorRT engine here (needs the TensorRT Python package)."""
    from cidpipe.pipeline import run_stage

    return run_stage(TRT, recipe, options)


def build_on_device(recipe: Recipe, device_name: str) -> str:
    """Build the engine on ``device_name`` with the export stage's flags; returns a one-line summary."""
    from cidpipe.bench.devices.inventory import load_inventory
    from cidpipe.bench.devices.jetson import build_engine_on_device
    from cidpipe.export.trtexec import trtexec_command
    from cidpipe.manifest import read_manifest

    device = load_inventory(recipe.bench.inventory).get_device(device_name)
    if device.kind == "local":
        raise UsageError("--device local: build here with `cidpipe export --target trt` (needs TensorRT)")
    TRT.validate(recipe)
    source_dir = recipe.run_dir() / source_stage(recipe)
    source = read_manifest(source_dir, source_stage(recipe))
    onnx_path = source.artifact_path(source_dir, source_key(recipe))
    args = trtexec_command(
        onnx_path,
        Path("model.engine"),
        recipe.export.trt,
        input_shape=tuple(source.model["input_shape"]),
        build_only=True,
    )
    engine, _log = build_engine_on_device(device, onnx_path, args)
    return f"engine built on {device.name}: {engine} (timing cache kept on the device)"

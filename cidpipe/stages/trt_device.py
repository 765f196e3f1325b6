"""Building a TensorRT engine on a target board (trtexec), for machines without TensorRT themselves."""

from __future__ import annotations

from pathlib import Path

from cidpipe.bench.devices.inventory import load_inventory
from cidpipe.config import Recipe
from cidpipe.errors import UsageError
from cidpipe.manifest import read_manifest
from cidpipe.stages.common import stage_dir
from cidpipe.stages.trt import source_verb


def build_on_device(recipe: Recipe, device_name: str) -> str:
    """Build the engine on ``device_name`` with the export stage's flags; returns a one-line summary."""
    from cidpipe.bench.devices.jetson import build_engine_on_device
    from cidpipe.export.trtexec import trtexec_command

    device = load_inventory(recipe.bench.inventory).get_device(device_name)
    if device.kind == "local":
        raise UsageError("--on local: build locally with `cidpipe export --target trt` (needs TensorRT here)")
    source_dir = stage_dir(recipe, source_verb(recipe))
    source = read_manifest(source_dir)
    onnx_path = source.artifact_path(source_dir, "onnx")
    args = trtexec_command(
        onnx_path,
        Path("model.engine"),
        recipe.export.trt,
        input_shape=tuple(source.model["input_shape"]),
        build_only=True,
    )
    engine, _log = build_engine_on_device(device, onnx_path, args)
    return f"engine built on {device.name}: {engine} (timing cache kept on the device)"

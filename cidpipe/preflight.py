"""What can be known to fail before any compute is spent, checked when a run is planned.

The recipe schema already refuses unknown names and impossible values; this looks at the world the recipe
points into: the output directory, the dataset files, weights files, the device inventory and the
combination of stages. ``cidpipe run --dry-run`` runs it, and so does every run before its first stage.
"""

from __future__ import annotations

import os
from pathlib import Path

from cidpipe.config import Recipe
from cidpipe.errors import ConfigError, ModelError, UsageError


def check_out_dir(recipe: Recipe) -> None:
    """The run directory can be created and written (a file, or a read-only tree, is refused)."""
    run_dir = recipe.run_dir()
    probe = run_dir
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise UsageError(f"--out {recipe.out_dir}: {probe} is a file, not a directory; choose a directory")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise UsageError(f"--out {recipe.out_dir}: {probe} is not writable; choose a writable directory")


def check_weights_files(recipe: Recipe) -> None:
    for role in ("teacher", "student"):
        section = getattr(recipe, role)
        checkpoint = None if section is None else section.model.checkpoint
        if checkpoint is not None and not Path(checkpoint).is_file():
            raise ModelError(
                f"{role}.model.checkpoint {checkpoint} does not exist; give the path of a "
                "safetensors or state_dict file"
            )


def check_devices(recipe: Recipe) -> None:
    if not recipe.bench.enabled:
        return
    from cidpipe.bench.devices.inventory import load_inventory

    inventory = load_inventory(recipe.bench.inventory)
    for name in recipe.bench.devices:
        inventory.get_device(name)  # raises with the known names when it is not in the inventory


def check_stage_combination(recipe: Recipe) -> None:
    export = recipe.export
    if export.enabled and "trt" in export.targets and export.trt.precision == "int8":
        if not (recipe.quantize.enabled and recipe.quantize.mode == "int8"):
            raise ConfigError(
                "export.trt.precision is int8 but the recipe does not quantize to int8; "
                "set quantize.mode: int8 (TensorRT builds INT8 from the QDQ model)"
            )


def check_data(recipe: Recipe) -> None:
    from cidpipe.data.preflight import check_data_available

    check_data_available(recipe.data)


def preflight_training(recipe: Recipe) -> None:
    """What the train and distill stages need: a writable run directory, weights files and the data."""
    check_out_dir(recipe)
    check_weights_files(recipe)
    check_data(recipe)


def preflight(recipe: Recipe) -> None:
    """Raise the first problem that would make the run fail later; cheap (no dataset is decoded)."""
    check_stage_combination(recipe)
    preflight_training(recipe)
    check_devices(recipe)

"""What can be known to fail before any compute is spent, checked when a run is planned.

The recipe schema already refuses unknown names and impossible values; this looks at the world the recipe
points into: the output directory, the dataset files, weights files and the device inventory. Each stage's
``validate`` calls the checks it needs (cidpipe/stages/contract.py), so ``cidpipe run --dry-run``, every run
before its first stage and every single-stage verb run them.
"""

from __future__ import annotations

import os
from pathlib import Path

from cidpipe.config import Recipe
from cidpipe.errors import ModelError, UsageError


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
    """Weights files exist and are readable as plain weights; pretrained weights are cached or reachable."""
    for role in ("teacher", "student"):
        section = getattr(recipe, role)
        if section is not None and section.model.pretrained:
            from cidpipe.models.sources import check_pretrained_fetchable

            check_pretrained_fetchable(section.model.arch)
        checkpoint = None if section is None else section.model.weights
        if checkpoint is not None and not Path(checkpoint).is_file():
            where = "" if Path(checkpoint).is_absolute() else f" (looked for {Path(checkpoint).absolute()})"
            state = "is a directory, not a file" if Path(checkpoint).is_dir() else "does not exist"
            raise ModelError(
                f"{role}.model.weights {checkpoint} {state}{where}; give the path of a "
                "safetensors or state_dict file (relative paths start at the current directory)"
            )
        if checkpoint is not None:
            from cidpipe.data.registry import dataset_channels
            from cidpipe.modelio import load_weights
            from cidpipe.models.sources import check_weights_fit

            # Readable as plain weights (not corrupt, not a pickled model) and fitting the architecture's
            # keys and shapes; nothing is read but the file's index.
            state = load_weights(Path(checkpoint), lazy=True)
            check_weights_fit(section.model, dataset_channels(recipe.data.name), state, str(checkpoint))


def check_normalisation_lengths(recipe: Recipe) -> None:
    """data.mean/std and teacher.input.mean/std give one value per image channel; a wrong length is named
    by its own key here, before the data is read (when loading, the teacher's values are data.* by then)."""
    from cidpipe.data.registry import dataset_channels
    from cidpipe.errors import ConfigError

    channels = dataset_channels(recipe.data.name)
    sections = [("data", recipe.data)]
    if recipe.teacher is not None and recipe.teacher.input is not None:
        sections.append(("teacher.input", recipe.teacher.input))
    for prefix, section in sections:
        for key in ("mean", "std"):
            values = getattr(section, key)
            if isinstance(values, list) and len(values) != channels:
                raise ConfigError(
                    f"{prefix}.{key} has {len(values)} values but {recipe.data.name} images have {channels} "
                    f"channel(s); give {channels}"
                )


def check_devices(recipe: Recipe) -> None:
    if not recipe.bench.enabled:
        return
    from cidpipe.bench.devices.inventory import load_inventory
    from cidpipe.bench.devices.probe import require_device_ready

    inventory = load_inventory(recipe.bench.inventory)
    devices = [inventory.get_device(name) for name in recipe.bench.devices]  # unknown names raise here
    for device in devices:
        if device.kind in ("jetson", "ssh"):
            # Connects to the device: an unreachable board or one without python/numpy/onnxruntime must fail
            # before anything trains (and in `run --dry-run`, the CI pre-flight), not as bench rows after.
            require_device_ready(device, tolerate_unreachable=recipe.bench.tolerate_device_failures)


def check_data(recipe: Recipe) -> None:
    from cidpipe.data.preflight import check_data_available

    check_data_available(recipe.data)


def preflight_training(recipe: Recipe) -> None:
    """What the train and distill stages need: a writable run directory, weights files and the data."""
    from cidpipe.training.tracking import check_trackers_available

    check_out_dir(recipe)
    check_weights_files(recipe)
    check_normalisation_lengths(recipe)
    check_data(recipe)
    check_trackers_available(recipe.report.trackers)  # a missing tensorboard/mlflow fails before training

"""Saving and loading the deployable model of a stage: safetensors weights + a JSON-able model spec.

The spec (stored in the stage manifest's ``model``) is everything needed to rebuild the module before
loading its weights: registry arch, classes, input shape, normalisation and the method's head.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from cidpipe.atomic import atomic_write_with
from cidpipe.errors import ModelError
from cidpipe.manifest import Manifest, read_manifest


def model_spec(arch: str, bundle, head: dict[str, Any], params: int) -> dict[str, Any]:
    return {
        "arch": arch,
        "num_classes": bundle.num_classes,
        "class_names": list(bundle.class_names),
        "input_shape": list(bundle.input_shape),
        "mean": list(bundle.mean),
        "std": list(bundle.std),
        "head": head,
        "params": params,
    }


def save_weights(module: torch.nn.Module, path: Path) -> None:
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    atomic_write_with(path, lambda tmp: save_file(state, str(tmp)))


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise ModelError(f"weights file not found: {path}")
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise ModelError(
                f"{path} is corrupt or not a safetensors file ({exc}); re-run the stage"
            ) from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means: not loadable safely
        raise ModelError(
            f"{path} cannot be loaded as plain weights ({type(exc).__name__}); "
            "export it as a state_dict or safetensors file"
        ) from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]  # a common wrapping in other projects' checkpoints
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"{path} does not hold a state_dict of tensors")
    return state


def load_state_strict(
    module: torch.nn.Module, state: dict[str, torch.Tensor], source: str, arch: str
) -> None:
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    if missing or unexpected or wrong:
        detail = (
            f"shape of '{wrong[0]}' is {tuple(state[wrong[0]].shape)}, expected {tuple(own[wrong[0]].shape)}"
            if wrong
            else f"{len(missing)} missing / {len(unexpected)} unexpected keys"
            f" (e.g. '{(missing or unexpected)[0]}')"
        )
        raise ModelError(f"{source} does not match a {arch} model with these classes: {detail}")
    module.load_state_dict(state)


def build_from_spec(spec: dict[str, Any]) -> torch.nn.Module:
    from cidpipe.distill.deploy import build_deployable
    from cidpipe.models import build_model

    backbone = build_model(spec["arch"], spec["num_classes"], in_channels=spec["input_shape"][0])
    return build_deployable(backbone, spec.get("head") or {"head": "plain"})


def load_stage_model(stage_dir: Path) -> tuple[torch.nn.Module, Manifest]:
    """The deployable module a train/distill stage produced, in eval mode on the CPU."""
    manifest = read_manifest(stage_dir)
    if manifest.model is None or "model" not in manifest.artifacts:
        raise ModelError(f"{stage_dir}: the {manifest.stage} stage has no model artifact")
    module = build_from_spec(manifest.model)
    path = manifest.artifact_path(Path(stage_dir), "model")
    load_state_strict(module, load_weights(path), str(path), manifest.model["arch"])
    return module.eval(), manifest

"""Saving and loading the deployable model of a stage: safetensors weights + a JSON-able model spec.

The spec (stored in the stage manifest's ``model``) is everything needed to rebuild the module before
loading its weights: registry arch, classes, input shape, normalisation and the method's head.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from cidpipe.atomic import atomic_write_with
from cidpipe.errors import ModelError
from cidpipe.manifest import Manifest, read_manifest


def model_spec(
    arch: str, bundle, head: dict[str, Any], params: int, source: dict[str, Any] | None = None
) -> dict[str, Any]:
    """``source`` is what ``models.sources.build_from_config`` returned; its ``kwargs`` are what rebuilds a
    timm/torchvision/python architecture, the rest records where the weights came from."""
    spec = {
        "arch": arch,
        "num_classes": bundle.num_classes,
        "class_names": list(bundle.class_names),
        "input_shape": list(bundle.input_shape),
        "mean": list(bundle.mean),
        "std": list(bundle.std),
        "head": head,
        "params": params,
    }
    if source is not None:
        spec["kwargs"] = dict(source.get("kwargs") or {})
        spec["source"] = source
    return spec


def check_model_classes(what: str, model: dict[str, Any], bundle) -> None:
    """ModelError unless the model (a spec or ONNX metadata: ``num_classes``, ``class_names``) predicts the
    data's classes, in the data's order: logits for other classes scored against these labels are
    numbers that look like accuracy and mean nothing."""
    names = model.get("class_names")
    count = model.get("num_classes", len(names) if names else None)
    data = list(bundle.class_names)
    if count is not None and int(count) != bundle.num_classes:
        listed = f" ({_listed(names)})" if names else ""
        raise ModelError(
            f"{what} predicts {count} classes{listed} but the data has {bundle.num_classes} "
            f"({_listed(data)}); evaluate it on the data it was trained on (data.root / data.name)"
        )
    if names and data and list(names) != data:
        raise ModelError(
            f"{what} was trained on the classes {_listed(names)} but the data's classes are {_listed(data)}; "
            "its class indices would be scored against other labels (use the data it was trained on)"
        )


def _listed(names, limit: int = 8) -> str:
    names = [str(n) for n in names]
    return ", ".join(names[:limit]) + (f", ... {len(names) - limit} more" if len(names) > limit else "")


def save_weights(module: torch.nn.Module, path: Path) -> None:
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    atomic_write_with(path, lambda tmp: save_file(state, str(tmp)))


# Containers other projects wrap a state dict in (Lightning, DeiT/timm train scripts, many repos).
_STATE_CONTAINERS = ("state_dict", "model", "model_state_dict", "module")


def load_weights(path: Path, *, lazy: bool = False) -> dict[str, torch.Tensor]:
    """A state dict of tensors from a safetensors or torch file, unwrapped from a common container.

    Nothing but tensors and plain containers is unpickled (``weights_only=True``): a whole pickled
    model is refused with what to save instead. ``lazy``: only check that the file is loadable, cheaply
    (the safetensors header; a torch zip file memory-mapped, its tensors not read); the tensors returned
    are then on the meta device: names and shapes, no values.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"weights file not found: {path}")
    if path.suffix == ".safetensors":
        try:
            if lazy:
                with safe_open(str(path), framework="pt") as handle:
                    return {
                        key: torch.empty(handle.get_slice(key).get_shape(), device="meta")
                        for key in handle.keys()
                    }
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise ModelError(
                f"{path} is corrupt or not a safetensors file ({exc}); save it again (or re-run the stage "
                "that wrote it)"
            ) from None
    # A legacy (pre-zip) torch file cannot be memory-mapped; it is read whole, as when loading.
    mmap = lazy and zipfile.is_zipfile(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as exc:
        # torch names a refused class ("Unsupported global: GLOBAL pkg.Class"); anything else it could not
        # unpickle is not a pickle at all (text, a truncated download, another format).
        if "GLOBAL" in str(exc):
            raise ModelError(_pickled_object_message(path, str(exc))) from None
        raise ModelError(_not_weights_message(path)) from None
    except Exception:  # noqa: BLE001 - any unpickling failure means: not loadable safely
        raise ModelError(_not_weights_message(path)) from None
    if isinstance(state, torch.nn.Module):  # only reachable for modules torch allow-lists; still refused
        raise ModelError(_pickled_object_message(path, type(state).__name__))
    for container in _STATE_CONTAINERS:
        if isinstance(state, dict) and isinstance(state.get(container), dict):
            state = state[container]
    tensors_only = isinstance(state, dict) and all(isinstance(v, torch.Tensor) for v in state.values())
    if not tensors_only or not state:
        raise ModelError(
            f"{path} does not hold a state_dict of tensors; save torch.save(model.state_dict(), path) "
            "or a safetensors file"
        )
    if lazy:
        return {key: torch.empty(value.shape, device="meta") for key, value in state.items()}
    return state


def _not_weights_message(path: Path) -> str:
    return (
        f"{path} is not a torch or safetensors weights file (corrupt, truncated or another format); save "
        "torch.save(model.state_dict(), path) or a safetensors file"
    )


def _pickled_object_message(path: Path, detail: str) -> str:
    # torch's weights_only error names the refused class ("Unsupported global: GLOBAL pkg.Class").
    found = re.search(r"GLOBAL ([\w.]+)", detail)
    what = f" ({found.group(1)})" if found else ""
    return (
        f"{path} holds a pickled Python object{what}, e.g. a whole model saved with torch.save(model), "
        "which cidpipe does not unpickle; save model.state_dict() instead "
        "(torch.save(model.state_dict(), path) or safetensors)"
    )


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
    from cidpipe.models.weights import with_layout_versions

    module.load_state_dict(with_layout_versions(module, state))


def build_from_spec(spec: dict[str, Any]) -> torch.nn.Module:
    from cidpipe.distill.deploy import build_deployable
    from cidpipe.models.sources import build_architecture

    # Fresh weights only: the stage's own weights file is loaded afterwards (load_stage_model), so a
    # pretrained or imported model reopens without its library cache or the user's original file.
    backbone = build_architecture(
        spec["arch"], spec["num_classes"], in_channels=spec["input_shape"][0], kwargs=spec.get("kwargs") or {}
    )
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

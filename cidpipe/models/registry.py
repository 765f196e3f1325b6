"""Model registry: names -> builders, with the facts a recipe needs (family, default LR, published size)."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass

from cidpipe.errors import ModelError
from cidpipe.models.base import ClassifierModel, check_build_args

ModelBuilder = Callable[..., ClassifierModel]


@dataclass(frozen=True)
class ModelInfo:
    """What the registry knows about a model without building it."""

    name: str
    family: str
    default_lr: float
    reference_params_m: float | None  # published parameter count in millions, with 100 classes


_BUILDERS: dict[str, ModelBuilder] = {}
_INFOS: dict[str, ModelInfo] = {}


def register_model(
    name: str, *, family: str, default_lr: float = 0.05, reference_params_m: float | None = None
) -> Callable[[ModelBuilder], ModelBuilder]:
    """Register ``builder(num_classes, in_channels=3) -> ClassifierModel`` under ``name``."""

    def decorate(builder: ModelBuilder) -> ModelBuilder:
        if name in _BUILDERS:
            raise ModelError(f"model name {name!r} is registered twice; give the second builder another name")
        _BUILDERS[name] = builder
        _INFOS[name] = ModelInfo(name, family, default_lr, reference_params_m)
        return builder

    return decorate


def _unknown(name: str) -> ModelError:
    from cidpipe.models.sources import library_hint

    hint = library_hint(name)
    if hint:
        return ModelError(f"unknown model {name!r}; {hint}")
    close = difflib.get_close_matches(name, list(_BUILDERS), n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return ModelError(f"unknown model {name!r}; {hint}run `cidpipe models` to list the registered names")


def build_model(name: str, num_classes: int, in_channels: int = 3) -> ClassifierModel:
    """Build a freshly initialised (never downloaded) model by registry name, or by a prefixed source
    name (``timm:``, ``torchvision:``, ``python:``; see sources.py) with its default arguments."""
    if ":" in name:
        from cidpipe.models.sources import build_architecture

        return build_architecture(name, num_classes, in_channels)
    if name not in _BUILDERS:
        raise _unknown(name)
    check_build_args(num_classes, in_channels)
    return _BUILDERS[name](int(num_classes), in_channels=int(in_channels))


def list_models() -> list[str]:
    """All registered names, sorted."""
    return sorted(_BUILDERS)


def model_info(name: str) -> ModelInfo:
    """Family, default learning rate and published size of a registered model (or of a prefixed source
    name, checked against its library without building it)."""
    if ":" in name:
        from cidpipe.models.sources import source_model_info

        return source_model_info(name)
    if name not in _INFOS:
        raise _unknown(name)
    return _INFOS[name]

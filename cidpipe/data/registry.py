"""Dataset registry: ``@register_dataset("name")`` on a ``loader(cfg) -> DatasetBundle`` function."""

from __future__ import annotations

import difflib
from collections.abc import Callable

from cidpipe.data.base import DatasetBundle
from cidpipe.data.config import DataConfig
from cidpipe.errors import ConfigError

DatasetLoader = Callable[[DataConfig], DatasetBundle]
_LOADERS: dict[str, DatasetLoader] = {}


def register_dataset(name: str) -> Callable[[DatasetLoader], DatasetLoader]:
    """Register a loader under ``name``; a second loader for the same name is a programming error."""

    def decorate(loader: DatasetLoader) -> DatasetLoader:
        if name in _LOADERS and _LOADERS[name] is not loader:
            raise ValueError(f"dataset {name!r} is already registered")
        _LOADERS[name] = loader
        return loader

    return decorate


def _builtin() -> None:
    # Importing the package registers the built-in datasets (each module decorates its loader).
    import cidpipe.data.datasets  # noqa: F401


def list_datasets() -> list[str]:
    _builtin()
    return sorted(_LOADERS)


def get_loader(name: str) -> DatasetLoader:
    _builtin()
    if name not in _LOADERS:
        close = difflib.get_close_matches(name, list(_LOADERS), n=1, cutoff=0.5)
        hint = f"did you mean '{close[0]}'? " if close else ""
        known = ", ".join(sorted(_LOADERS))
        raise ConfigError(f"unknown dataset '{name}' in data.name: {hint}known: {known}")
    return _LOADERS[name]


def load_dataset(cfg: DataConfig) -> DatasetBundle:
    """Load ``cfg.name``, keep the first ``cfg.limit_train`` training samples, then apply ``cfg.bias``."""
    bundle = get_loader(cfg.name)(cfg)
    if cfg.limit_train is not None and cfg.limit_train < len(bundle.train):
        # The training part is stored in a seeded random order, so its head is a random subset.
        bundle.train = bundle.train.subset(range(cfg.limit_train))
        bundle.provenance["limit_train"] = cfg.limit_train
    if cfg.bias is not None:
        from cidpipe.data.bias import apply_bias

        bundle = apply_bias(bundle, cfg.bias)
    return bundle

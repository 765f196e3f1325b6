"""Dataset registry: ``@register_dataset("name")`` on a ``loader(cfg) -> DatasetBundle`` function.

``register_dataset(name, check=fn)`` also registers ``fn(cfg) -> None``, the cheap availability check run
by :func:`check_data_available` (see cidpipe/data/preflight.py).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable

from cidpipe.data.base import DatasetBundle
from cidpipe.data.config import DataConfig
from cidpipe.errors import ConfigError

DatasetLoader = Callable[[DataConfig], DatasetBundle]
DatasetCheck = Callable[[DataConfig], None]
_LOADERS: dict[str, DatasetLoader] = {}
_CHECKS: dict[str, DatasetCheck] = {}
_CHANNELS: dict[str, int] = {}
_CLASSES: dict[str, int | Callable[[DataConfig], int]] = {}


def register_dataset(name: str, *, check: DatasetCheck | None = None, channels: int = 3,
                     classes: int | Callable[[DataConfig], int] | None = None
                     ) -> Callable[[DatasetLoader], DatasetLoader]:
    """Register a loader (and optionally its availability check) under ``name``.

    ``channels``: how many channels its images have (the built-in ones are all RGB, grayscale replicated),
    so data.mean/std lengths can be checked before the data is read. A second loader for the same name is
    a programming error. ``classes``: the class count, or a cheap function of the config that finds it
    without reading the data (an image folder lists its class folders), so the plan can foresee a head reset.
    """

    def decorate(loader: DatasetLoader) -> DatasetLoader:
        if name in _LOADERS and _LOADERS[name] is not loader:
            raise ValueError(f"dataset {name!r} is already registered")
        _LOADERS[name] = loader
        _CHANNELS[name] = channels
        if classes is not None:
            _CLASSES[name] = classes
        if check is not None:
            _CHECKS[name] = check
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


def get_check(name: str) -> DatasetCheck:
    """The availability check of ``name`` (ConfigError if unknown); data.root's check if it has none."""
    from cidpipe.data.preflight import check_root

    get_loader(name)
    return _CHECKS.get(name, check_root)


def dataset_channels(name: str) -> int:
    """The number of channels of ``name``'s images (ConfigError if unknown)."""
    get_loader(name)
    return _CHANNELS[name]


def planned_class_count(cfg: DataConfig) -> int | None:
    """How many classes ``cfg``'s dataset has, found without loading it; None when that is not cheap."""
    get_loader(cfg.name)
    classes = _CLASSES.get(cfg.name)
    return classes(cfg) if callable(classes) else classes


def check_data_available(cfg: DataConfig) -> None:
    """DataError (one line, exit 3) when ``cfg``'s dataset is certainly not loadable; cheap, reads no data.

    What is checked: data.root exists, is a directory and can be listed; the files the dataset kind needs
    are there, readable and not empty; IDX headers agree (a few bytes each). digits always passes; with
    data.download: true a missing dataset passes (the loader fetches it). An unknown data.name is a
    ConfigError (exit 2), as when loading. See cidpipe/data/preflight.py.
    """
    get_check(cfg.name)(cfg)


def load_dataset(cfg: DataConfig) -> DatasetBundle:
    """Load ``cfg.name``, keep the first ``cfg.limit_train`` training samples, apply ``cfg.bias``, then
    data.mean / data.std."""
    bundle = get_loader(cfg.name)(cfg)
    if cfg.limit_train is not None and cfg.limit_train < len(bundle.train):
        # The training part is stored in a seeded random order, so its head is a random subset.
        bundle.train = bundle.train.subset(range(cfg.limit_train))
        bundle.provenance["limit_train"] = cfg.limit_train
    if cfg.bias is not None:
        from cidpipe.data.bias import apply_bias

        bundle = apply_bias(bundle, cfg.bias)
    # Last, so mean/std: auto measures the training images the model sees (bias colours included).
    from cidpipe.data.normalisation import apply_normalisation

    return apply_normalisation(bundle, cfg)

"""Datasets: registry, splits (tensor-resident or file-backed), device-side augmentation, colour bias.

The names below are resolved on first use, so reading a recipe (which imports cidpipe.data.config) does
not import torch: `cidpipe --help` and recipe validation stay fast.
"""

from __future__ import annotations

from cidpipe.lazy import lazy_exports

_EXPORTS = {
    "DatasetBundle": "cidpipe.data.base",
    "ImageFolderSplit": "cidpipe.data.base",
    "Split": "cidpipe.data.base",
    "TensorSplit": "cidpipe.data.base",
    "BiasConfig": "cidpipe.data.config",
    "DataConfig": "cidpipe.data.config",
    "TransformsConfig": "cidpipe.data.transform_config",
    "check_data_available": "cidpipe.data.registry",
    "list_datasets": "cidpipe.data.registry",
    "load_dataset": "cidpipe.data.registry",
    "register_dataset": "cidpipe.data.registry",
    "place_split": "cidpipe.data.resident",
}
__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)

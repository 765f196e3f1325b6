"""Datasets: registry, splits (tensor-resident or file-backed), device-side augmentation, colour bias."""

from cidpipe.data.base import DatasetBundle, ImageFolderSplit, Split, TensorSplit
from cidpipe.data.config import BiasConfig, DataConfig
from cidpipe.data.registry import list_datasets, load_dataset, register_dataset
from cidpipe.data.resident import place_split

__all__ = [
    "BiasConfig", "DataConfig", "DatasetBundle", "ImageFolderSplit", "Split", "TensorSplit",
    "list_datasets", "load_dataset", "place_split", "register_dataset",
]

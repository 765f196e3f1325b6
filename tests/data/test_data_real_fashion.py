"""The real Fashion-MNIST from the Debian package dataset-fashion-mnist (skipped where it is absent)."""

from __future__ import annotations

import numpy as np
import pytest

from cidpipe.data import DataConfig, load_dataset
from cidpipe.data.datasets.fashion_mnist import (
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_DEBIAN_ROOT,
    FASHION_MNIST_MEAN,
    FASHION_MNIST_STD,
    locate_fashion_mnist,
    read_fashion_mnist,
)

pytestmark = pytest.mark.skipif(
    locate_fashion_mnist(FASHION_MNIST_DEBIAN_ROOT) is None,
    reason=f"Fashion-MNIST not in {FASHION_MNIST_DEBIAN_ROOT} (apt-get install dataset-fashion-mnist)",
)


def test_real_fashion_mnist_loads_with_the_published_sizes() -> None:
    bundle = load_dataset(DataConfig(name="fashion-mnist"))
    assert (len(bundle.train), len(bundle.val), len(bundle.test)) == (54000, 6000, 10000)
    assert bundle.class_names == FASHION_MNIST_CLASSES
    assert np.bincount(bundle.test.labels.numpy()).tolist() == [1000] * 10
    x, y = bundle.test.to_numpy(max_samples=8)
    assert x.shape == (8, 3, 32, 32) and x.dtype == np.float32 and y.dtype == np.int64
    assert np.all(x[:, :, :2, :] == x[0, 0, 0, 0])  # the 2 px zero padding, normalised


def test_real_fashion_mnist_normalisation_constants() -> None:
    train_images, *_ = read_fashion_mnist(locate_fashion_mnist(FASHION_MNIST_DEBIAN_ROOT))
    # Pixel histogram of the padded 32x32 images: the padding adds 32*32 - 28*28 zeros per image.
    hist = np.bincount(train_images.ravel(), minlength=256).astype(np.float64)
    hist[0] += len(train_images) * (32 * 32 - 28 * 28)
    values = np.arange(256) / 255.0
    mean = (hist * values).sum() / hist.sum()
    std = np.sqrt((hist * (values - mean) ** 2).sum() / hist.sum())
    assert FASHION_MNIST_MEAN == (round(mean, 4),) * 3 and FASHION_MNIST_STD == (round(std, 4),) * 3

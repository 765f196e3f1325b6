"""``digits``: scikit-learn's 8x8 handwritten digits (1797 images), embedded, no download.

Each 8x8 image (values 0..16) is scaled to 0..255, bilinearly upsampled to 32x32 and replicated to three
channels, so the CIFAR models and the colour bias apply unchanged. scikit-learn ships no test split: a
fixed stratified 20 % (seed 0, independent of data.split_seed) is the test set (359 images); the
validation split is then carved from the remaining 1438 with data.split_seed / data.val_fraction
(default 0.1: 143 val, 1295 train). Horizontal flips are off by default: a mirrored digit is not a digit.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from cidpipe.data.base import DatasetBundle
from cidpipe.data.config import DataConfig
from cidpipe.data.registry import register_dataset
from cidpipe.data.splitting import stratified_split, tensor_bundle

DIGITS_TEST_FRACTION = 0.2
DIGITS_TEST_SEED = 0
DIGITS_NATIVE_SIZE = 32
# Per-channel mean/std of the 1438 non-test images at 32x32 (x/255), computed once by
# digits_pixel_statistics() and pinned by tests/data; all three channels are equal (grayscale).
DIGITS_MEAN = (0.3049, 0.3049, 0.3049)
DIGITS_STD = (0.3236, 0.3236, 0.3236)


def digits_uint8() -> tuple[np.ndarray, np.ndarray]:
    """All 1797 digits as uint8 [N, 3, 32, 32] and int64 labels."""
    from sklearn.datasets import load_digits

    data = load_digits()
    small = torch.from_numpy(data.images.astype(np.float32) * (255.0 / 16.0))[:, None]  # [N,1,8,8]
    big = F.interpolate(small, size=(DIGITS_NATIVE_SIZE, DIGITS_NATIVE_SIZE), mode="bilinear",
                        align_corners=False)
    images = big.round().clamp(0, 255).to(torch.uint8).expand(-1, 3, -1, -1).contiguous().numpy()
    return images, data.target.astype(np.int64)


def digits_test_split(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(pool, test) indices: the fixed stratified test carve-out."""
    pool, test = stratified_split(labels, DIGITS_TEST_FRACTION, DIGITS_TEST_SEED)
    return np.sort(pool), test


def digits_pixel_statistics() -> tuple[float, float]:
    """Mean and std (0..1 scale) over the non-test pool: how DIGITS_MEAN / DIGITS_STD were obtained."""
    images, labels = digits_uint8()
    pool, _ = digits_test_split(labels)
    pixels = images[pool, 0].astype(np.float64) / 255.0
    return float(pixels.mean()), float(pixels.std())


def check_digits_available(cfg: DataConfig) -> None:
    """Always there: the images ship inside scikit-learn, a dependency (data.root is not used)."""


@register_dataset("digits", check=check_digits_available, classes=10)
def load_digits_bundle(cfg: DataConfig) -> DatasetBundle:
    images, labels = digits_uint8()
    pool, test = digits_test_split(labels)
    return tensor_bundle(
        cfg, name="digits", class_names=[str(d) for d in range(10)], mean=DIGITS_MEAN, std=DIGITS_STD,
        train_images=images[pool], train_labels=labels[pool],
        test_images=images[test], test_labels=labels[test], hflip_default=False,
        provenance={"source": "sklearn.datasets.load_digits", "test_fraction": DIGITS_TEST_FRACTION,
                    "test_seed": DIGITS_TEST_SEED},
    )

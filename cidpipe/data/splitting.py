"""Deterministic stratified splits and the shared builder of tensor-backed bundles."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from cidpipe.data.augment import resize_uint8
from cidpipe.data.base import DatasetBundle
from cidpipe.data.config import DataConfig
from cidpipe.data.tensor_split import TensorSplit
from cidpipe.errors import DataError

DEFAULT_INPUT_SIZE = 32
DEFAULT_PAD = 4


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split indices into (keep, held_out) with ``round(fraction * n_c)`` of every class c held out.

    Every class with >= 2 samples keeps at least one and holds out at least one. ``keep`` comes in a
    seeded random order (so "the first N" of it is a random subset); ``held_out`` in ascending order.
    """
    labels = np.asarray(labels, dtype=np.int64)
    n = len(labels)
    perm = np.random.default_rng(seed).permutation(n)
    by_class = perm[np.argsort(labels[perm], kind="stable")]  # grouped by class, shuffled within
    classes, starts, counts = np.unique(labels[by_class], return_index=True, return_counts=True)
    held = np.rint(fraction * counts).astype(np.int64)
    held = np.where(counts >= 2, np.clip(held, 1, counts - 1), 0)
    class_pos = np.searchsorted(classes, labels[by_class])
    rank = np.arange(n) - starts[class_pos]
    is_held = np.zeros(n, dtype=bool)
    is_held[by_class[rank < held[class_pos]]] = True
    keep = perm[~is_held[perm]]
    return keep, np.sort(np.flatnonzero(is_held))


def resolve_hflip(cfg: DataConfig, dataset_default: bool) -> bool:
    return dataset_default if cfg.hflip is None else cfg.hflip


def tensor_bundle(
    cfg: DataConfig,
    *,
    name: str,
    class_names: Sequence[str],
    mean: Sequence[float],
    std: Sequence[float],
    train_images: np.ndarray,
    train_labels: np.ndarray,
    test_images: np.ndarray,
    test_labels: np.ndarray,
    hflip_default: bool,
    provenance: dict | None = None,
) -> DatasetBundle:
    """Carve val from train (stratified, cfg.split_seed), resize to cfg.input_size, wrap in TensorSplits."""
    for what, labels in (("training", train_labels), ("test", test_labels)):
        if len(labels) and (labels.min() < 0 or labels.max() >= len(class_names)):
            raise DataError(f"{name}: {what} labels outside 0..{len(class_names) - 1}; the files are corrupt")
    size = cfg.input_size or DEFAULT_INPUT_SIZE
    train_t = resize_uint8(torch.from_numpy(np.ascontiguousarray(train_images)), size)
    test_t = resize_uint8(torch.from_numpy(np.ascontiguousarray(test_images)), size)
    keep, val_idx = stratified_split(train_labels, cfg.val_fraction, cfg.split_seed)
    hflip = resolve_hflip(cfg, hflip_default)

    def make(images: torch.Tensor, labels: np.ndarray) -> TensorSplit:
        return TensorSplit(images, torch.from_numpy(labels.astype(np.int64)), mean, std,
                           pad=DEFAULT_PAD, hflip=hflip)

    keep_t, val_t = torch.from_numpy(keep), torch.from_numpy(val_idx)
    return DatasetBundle(
        name=name,
        class_names=list(class_names),
        num_classes=len(class_names),
        input_shape=(int(train_t.shape[1]), size, size),
        mean=tuple(float(m) for m in mean),
        std=tuple(float(s) for s in std),
        train=make(train_t[keep_t], train_labels[keep]),
        val=make(train_t[val_t], train_labels[val_idx]),
        test=make(test_t, test_labels),
        provenance={"val_fraction": cfg.val_fraction, "split_seed": cfg.split_seed, "input_size": size,
                    "hflip": hflip, "pad": DEFAULT_PAD, **(provenance or {})},
    )

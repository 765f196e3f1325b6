"""Deterministic stratified splits and the shared builder of tensor-backed bundles."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch

from cidpipe.data.augment import resize_uint8
from cidpipe.data.base import DatasetBundle
from cidpipe.data.config import DataConfig
from cidpipe.data.tensor_split import TensorSplit
from cidpipe.errors import ConfigError, DataError

DEFAULT_INPUT_SIZE = 32
DEFAULT_PAD = 4
_RESIZE_CHUNK = 1024


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split indices into (keep, held_out) with ``round(fraction * n_c)`` of every class c held out.

    Every class with >= 2 samples keeps at least one and holds out at least one, unless ``fraction`` is
    0: then nothing is held out (``data.val_fraction: 0``, training on the whole set). ``keep`` comes in a
    seeded random order (so "the first N" of it is a random subset); ``held_out`` in ascending order.
    """
    labels = np.asarray(labels, dtype=np.int64)
    n = len(labels)
    perm = np.random.default_rng(seed).permutation(n)
    by_class = perm[np.argsort(labels[perm], kind="stable")]  # grouped by class, shuffled within
    classes, starts, counts = np.unique(labels[by_class], return_index=True, return_counts=True)
    held = np.rint(fraction * counts).astype(np.int64)
    held = np.where((counts >= 2) & (fraction > 0), np.clip(held, 1, counts - 1), 0)
    class_pos = np.searchsorted(classes, labels[by_class])
    rank = np.arange(n) - starts[class_pos]
    is_held = np.zeros(n, dtype=bool)
    is_held[by_class[rank < held[class_pos]]] = True
    keep = perm[~is_held[perm]]
    return keep, np.sort(np.flatnonzero(is_held))


def _physical_memory() -> int | None:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):  # not a POSIX system that reports it
        return None


def input_hw(cfg: DataConfig) -> tuple[int, int]:
    """(height, width) of data.input_size: a square side or [h, w]; DEFAULT_INPUT_SIZE when unset."""
    size = cfg.input_size or DEFAULT_INPUT_SIZE
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def size_record(hw: tuple[int, int]) -> int | list[int]:
    """How provenance records the input size: the side of a square (as before [h, w] existed), else [h, w]."""
    return hw[0] if hw[0] == hw[1] else list(hw)


def _check_fits_in_memory(name: str, hw: tuple[int, int], *parts: np.ndarray) -> None:
    # A tensor dataset is held resized in memory: n x C x h x w bytes. A large data.input_size on
    # a 60 000-image dataset asks for terabytes; say so in one line instead of dying in the allocator.
    images = sum(len(p) for p in parts)
    channels = int(parts[0].shape[1]) if parts and parts[0].ndim == 4 else 3
    needed = images * channels * hw[0] * hw[1]
    memory = _physical_memory()
    if memory is not None and needed > memory:
        shown = size_record(hw)
        raise ConfigError(f"data.input_size={shown} makes {name} {needed / 2**30:.1f} GiB in memory "
                          f"({images} images of {channels}x{hw[0]}x{hw[1]}), more than this machine's "
                          f"{memory / 2**30:.1f} GiB; lower data.input_size")


def _resize_all(images: np.ndarray, hw: tuple[int, int]) -> torch.Tensor:
    """resize_uint8 over a whole uint8 NCHW array, in chunks: the float copy it needs stays small."""
    source = torch.from_numpy(np.ascontiguousarray(images))
    if tuple(source.shape[-2:]) == hw:
        return source
    out = torch.empty((*source.shape[:2], *hw), dtype=torch.uint8)
    for start in range(0, len(source), _RESIZE_CHUNK):
        out[start : start + _RESIZE_CHUNK] = resize_uint8(source[start : start + _RESIZE_CHUNK], hw)
    return out


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
    if cfg.transforms is not None:
        raise ConfigError(f"data.transforms applies to file-backed datasets (imagefolder); {name} is held "
                          "in memory and augmented batch-wise: use data.augment / data.hflip instead")
    hw = input_hw(cfg)
    _check_fits_in_memory(name, hw, train_images, test_images)
    train_t = _resize_all(train_images, hw)
    test_t = _resize_all(test_images, hw)
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
        input_shape=(int(train_t.shape[1]), *hw),
        mean=tuple(float(m) for m in mean),
        std=tuple(float(s) for s in std),
        train=make(train_t[keep_t], train_labels[keep]),
        val=make(train_t[val_t], train_labels[val_idx]),
        test=make(test_t, test_labels),
        provenance={"val_fraction": cfg.val_fraction, "split_seed": cfg.split_seed,
                    "input_size": size_record(hw), "hflip": hflip, "pad": DEFAULT_PAD, **(provenance or {})},
    )

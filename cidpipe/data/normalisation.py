"""data.mean / data.std: explicit values or ``auto`` (per-channel statistics of the training split).

The values chosen end in the bundle (so in every manifest's ``data`` and ``model`` records, and in the
exported model's metadata); ``provenance["normalisation"]`` says where they came from.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

from cidpipe.data.base import DatasetBundle
from cidpipe.data.config import DataConfig
from cidpipe.data.folder_split import ImageFolderSplit
from cidpipe.data.split import Split
from cidpipe.data.tensor_split import TensorSplit
from cidpipe.errors import ConfigError

# A file-backed training split is decoded for ``auto`` only up to this many images: its storage order is
# a seeded random one, so the head is a random sample, and 10 000 images pin each channel's mean to
# about 1e-3 while ImageNet-sized folders would otherwise be decoded whole before training starts.
AUTO_STATS_MAX_FILES = 10_000
_CHUNK = 1024


def _uint8_chunks(split: Split) -> tuple[Iterator[Tensor], int]:
    if isinstance(split, TensorSplit):
        images = split.images
        return (images[s : s + _CHUNK].cpu() for s in range(0, len(split), _CHUNK)), len(split)
    if isinstance(split, ImageFolderSplit):
        n = min(len(split), AUTO_STATS_MAX_FILES)
        return (images for images, _ in split.uint8_chunks(n)), n
    raise ConfigError(f"data.mean/std: auto is not supported for {type(split).__name__} splits; "
                      "give the values explicitly")


def channel_statistics(split: Split) -> tuple[tuple[float, ...], tuple[float, ...], int]:
    """(mean, std, images used) per channel on the 0..1 scale, over every pixel of the un-augmented images.

    Exact integer sums (int64 holds 255^2 * 2^40 pixels), so the result does not depend on chunking.
    """
    chunks, count = _uint8_chunks(split)
    total = squares = None
    pixels = 0
    for images in chunks:
        wide = images.to(torch.int64)
        part, part_sq = wide.sum(dim=(0, 2, 3)), (wide * wide).sum(dim=(0, 2, 3))
        total, squares = (part, part_sq) if total is None else (total + part, squares + part_sq)
        pixels += images.shape[0] * images.shape[2] * images.shape[3]
    if total is None or pixels == 0:
        raise ConfigError("data.mean/std: auto needs a non-empty training split")
    mean = total.double() / pixels
    var = (squares.double() / pixels - mean * mean).clamp_min(0.0)
    std = var.sqrt() / 255.0
    if bool((std == 0).any()):
        raise ConfigError("data.std: auto found a channel with no variation (std 0) in the training split; "
                          "give data.std explicitly")
    return tuple((mean / 255.0).tolist()), tuple(std.tolist()), count


def _checked(values: list[float], key: str, channels: int, dataset: str) -> tuple[float, ...]:
    if len(values) != channels:
        raise ConfigError(f"data.{key} has {len(values)} values but {dataset} images have {channels} "
                          f"channel(s); give {channels}")
    return tuple(float(v) for v in values)


def apply_normalisation(bundle: DatasetBundle, cfg: DataConfig) -> DatasetBundle:
    """``bundle`` with every split normalised by data.mean / data.std (unchanged when both are unset)."""
    if cfg.mean is None and cfg.std is None:
        return bundle
    channels = bundle.input_shape[0]
    record: dict = {}
    stats = None
    if "auto" in (cfg.mean, cfg.std):
        stats = channel_statistics(bundle.train)
        record["auto_images"] = stats[2]
    chosen = []
    for key, current, index in (("mean", bundle.mean, 0), ("std", bundle.std, 1)):
        value = getattr(cfg, key)
        if value is None:
            chosen.append(tuple(current))
            record[key] = "dataset"
        elif value == "auto":
            chosen.append(stats[index])
            record[key] = "auto"
        else:
            chosen.append(_checked(value, key, channels, bundle.name))
            record[key] = "recipe"
    mean, std = chosen
    bundle.train = bundle.train.with_normalisation(mean, std)
    bundle.val = bundle.val.with_normalisation(mean, std)
    bundle.test = bundle.test.with_normalisation(mean, std)
    bundle.extra_test = {name: split.with_normalisation(mean, std)
                         for name, split in bundle.extra_test.items()}
    bundle.mean, bundle.std = mean, std
    bundle.provenance["normalisation"] = record
    return bundle

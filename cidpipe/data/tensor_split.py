"""A split held as one uint8 tensor: small enough for memory, augmented batch-wise on its device."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch import Tensor

from cidpipe.data.augment import normalise, random_crop_flip
from cidpipe.data.split import Split, as_index_tensor, batch_order, batch_slices

# Normalise this many images at a time in to_numpy, to bound the float32 peak memory.
_NUMPY_CHUNK = 4096


class TensorSplit(Split):
    """uint8 images [N, C, H, W] + int64 labels + normalisation + augmentation settings.

    Augmentation (random crop with zero padding ``pad``, horizontal flip with p=0.5 when ``hflip``) and
    normalisation run on the device the batch is moved to, in a few tensor operations.
    """

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        mean: Sequence[float],
        std: Sequence[float],
        *,
        pad: int = 4,
        hflip: bool = True,
        bias_colours: Tensor | None = None,
    ) -> None:
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(f"images must be uint8 [N,C,H,W], got {images.dtype} {tuple(images.shape)}")
        if labels.dim() != 1 or labels.shape[0] != images.shape[0]:
            raise ValueError(f"labels must be [N] with N={images.shape[0]}, got {tuple(labels.shape)}")
        if len(mean) != images.shape[1] or len(std) != images.shape[1]:
            raise ValueError(f"mean/std need {images.shape[1]} channels, got {len(mean)}/{len(std)}")
        if pad < 0:
            raise ValueError(f"pad must be >= 0, got {pad}")
        self.images = images
        self._labels = labels.to(dtype=torch.long)
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.pad = int(pad)
        self.hflip = bool(hflip)
        self.bias_colours = None if bias_colours is None else bias_colours.to(torch.long).cpu()
        self._fingerprint: str | None = None

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __repr__(self) -> str:
        return (f"TensorSplit(n={len(self)}, shape={self.input_shape}, device={self.images.device}, "
                f"pad={self.pad}, hflip={self.hflip})")

    @property
    def labels(self) -> torch.LongTensor:
        return self._labels.cpu()

    @property
    def input_shape(self) -> tuple[int, int, int]:
        _, c, h, w = self.images.shape
        return int(c), int(h), int(w)

    @property
    def device(self) -> torch.device:
        return self.images.device

    def batches(
        self,
        batch_size: int,
        *,
        shuffle: bool,
        augment: bool,
        device: str | torch.device = "cpu",
        generator: torch.Generator | None = None,
        drop_last: bool = False,
        with_index: bool = False,
    ) -> Iterator[tuple[Tensor, ...]]:
        """``(x, y)`` batches, or ``(x, y, index)`` with ``with_index`` (storage indices, on ``device``).

        Host-to-device copies are non-blocking: a CUDA-resident split costs no host sync per batch.
        """
        device = torch.device(device)
        order = batch_order(len(self), shuffle=shuffle, generator=generator)
        for index in batch_slices(order, batch_size, drop_last):
            # Gather where the images live, then move uint8 (4x fewer bytes than float32) to the device.
            where = index.to(self.images.device, non_blocking=True)
            images = self.images[where].to(device, non_blocking=True)
            labels = self._labels[where.to(self._labels.device)].to(device, non_blocking=True)
            if augment and (self.pad > 0 or self.hflip):
                images = random_crop_flip(images, self.pad, self.hflip, generator)
            if with_index:
                yield normalise(images, self.mean, self.std), labels, index.to(device, non_blocking=True)
            else:
                yield normalise(images, self.mean, self.std), labels

    def to_numpy(self, max_samples: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        n = len(self) if max_samples is None else min(int(max_samples), len(self))
        out = np.empty((n, *self.input_shape), dtype=np.float32)
        for start in range(0, n, _NUMPY_CHUNK):
            stop = min(start + _NUMPY_CHUNK, n)
            out[start:stop] = normalise(self.images[start:stop], self.mean, self.std).cpu().numpy()
        return out, self._labels[:n].cpu().numpy().astype(np.int64)

    def fingerprint(self) -> str:
        if self._fingerprint is None:
            digest = hashlib.sha256()
            digest.update(repr(("TensorSplit", tuple(self.images.shape), self.mean, self.std)).encode())
            digest.update(self.images.cpu().contiguous().numpy().tobytes())
            digest.update(self._labels.cpu().numpy().astype("<i8").tobytes())
            self._fingerprint = digest.hexdigest()
        return self._fingerprint

    def to_device(self, device: str | torch.device) -> TensorSplit:
        device = torch.device(device)
        moved = self._replace(self.images.to(device), self._labels.to(device), self.bias_colours)
        moved._fingerprint = self._fingerprint  # same content, no need to hash again
        return moved

    def subset(self, indices: Sequence[int] | np.ndarray | Tensor) -> TensorSplit:
        index = as_index_tensor(indices)
        colours = None if self.bias_colours is None else self.bias_colours[index]
        return self._replace(
            self.images[index.to(self.images.device)], self._labels[index.to(self._labels.device)], colours
        )

    def with_normalisation(self, mean: Sequence[float], std: Sequence[float]) -> TensorSplit:
        return TensorSplit(self.images, self._labels, mean, std, pad=self.pad, hflip=self.hflip,
                           bias_colours=self.bias_colours)

    def with_images(self, images: Tensor, bias_colours: Tensor | None = None) -> TensorSplit:
        """Same labels and settings, new pixels (used by the bias wrapper)."""
        return self._replace(images, self._labels, bias_colours)

    def _replace(self, images: Tensor, labels: Tensor, bias_colours: Tensor | None) -> TensorSplit:
        return TensorSplit(images, labels, self.mean, self.std, pad=self.pad, hflip=self.hflip,
                           bias_colours=bias_colours)

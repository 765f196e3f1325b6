"""The abstract :class:`Split`: one partition (train, val, test, ...) of a dataset.

Every split yields normalised float32 NCHW batches and int64 labels on the device it is asked for, and can
describe itself by a content hash so manifests pin exactly which data a model saw.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor


class Split(ABC):
    """A dataset partition. Subclasses hold the data; augmentation settings travel with them."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    pad: int
    hflip: bool
    # Per-sample colour index of a biased split (cidpipe/data/bias.py), None when the split is unbiased.
    bias_colours: torch.LongTensor | None = None

    @abstractmethod
    def __len__(self) -> int: ...

    @property
    @abstractmethod
    def labels(self) -> torch.LongTensor:
        """All labels, in storage order (for class statistics)."""

    @abstractmethod
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
        """Yield ``(x, y)``: x float32 normalised NCHW on ``device``, y int64 on ``device``.

        With ``with_index`` yield ``(x, y, index)``: the int64 storage indices of the batch's samples (on
        ``device``), e.g. to look up per-sample values computed once (cached teacher outputs).
        """

    @abstractmethod
    def to_numpy(self, max_samples: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The first ``max_samples`` samples in storage order: normalised float32 NCHW and int64 labels."""

    @abstractmethod
    def fingerprint(self) -> str:
        """sha256 (hex) of the split's content; stable across runs, machines and devices."""

    @abstractmethod
    def to_device(self, device: str | torch.device) -> Split:
        """A copy whose images live on ``device`` (the fast path: augmentation runs there)."""

    @abstractmethod
    def subset(self, indices: Sequence[int] | np.ndarray | Tensor) -> Split:
        """A split holding only ``indices`` (in that order)."""

    def evenly_spaced(self, count: int | None) -> Split:
        """At most ``count`` samples spread evenly through the split (every k-th), in storage order.

        For accuracy passes capped to a few images (bench.max_eval_samples, export.parity.samples): an
        image folder is stored class by class, so its first N images can miss whole classes and report a
        0 % top-1 the model does not have; every k-th image keeps each class at its share (within one).
        """
        if count is None or count >= len(self):
            return self
        return self.subset((np.arange(count, dtype=np.int64) * len(self)) // count)

    @property
    @abstractmethod
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of the normalised samples."""

    def with_normalisation(self, mean: Sequence[float], std: Sequence[float]) -> Split:
        """The same samples normalised with ``mean``/``std`` (data.mean / data.std)."""
        raise NotImplementedError(f"{type(self).__name__} cannot change its normalisation")

    def describe(self) -> dict[str, Any]:
        counts = torch.bincount(self.labels).tolist() if len(self) else []
        return {
            "size": len(self),
            "fingerprint": self.fingerprint(),
            "kind": type(self).__name__,
            "class_counts": counts,
            "pad": self.pad,
            "hflip": self.hflip,
            "biased": self.bias_colours is not None,
        }


def batch_order(n: int, *, shuffle: bool, generator: torch.Generator | None) -> Tensor:
    """Sample order for one pass; drawn on the CPU so the order does not depend on the device."""
    if shuffle:
        return torch.randperm(n, generator=generator)
    return torch.arange(n)


def batch_slices(order: Tensor, batch_size: int, drop_last: bool) -> Iterator[Tensor]:
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n = len(order)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        yield order[start : start + batch_size]


def as_index_tensor(indices: Sequence[int] | np.ndarray | Tensor) -> Tensor:
    if isinstance(indices, Tensor):
        return indices.long().cpu()
    return torch.as_tensor(np.asarray(indices, dtype=np.int64))

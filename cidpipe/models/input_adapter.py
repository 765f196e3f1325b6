"""Showing a teacher the student's images the way the teacher was trained to see them.

A teacher pretrained at 224 px with ImageNet statistics distils a student fed 32 px CIFAR tensors
normalised with CIFAR statistics. ``InputAdapter`` sits in front of the teacher: it undoes the student's
normalisation, resizes, applies the teacher's normalisation, then calls the teacher. It exposes the
teacher's feature API unchanged, so every distiller uses it like the teacher itself.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cidpipe.errors import ModelError


def _stats(values: Sequence[float], what: str) -> Tensor:
    tensor = torch.as_tensor([float(v) for v in values], dtype=torch.float32)
    if tensor.dim() != 1 or len(tensor) == 0:
        raise ModelError(f"{what} must be a list of per-channel values, got {list(values)}")
    return tensor.view(1, -1, 1, 1)


class InputAdapter(nn.Module):
    """``model(renormalise(resize(unnormalise(x))))``, exposing ``model``'s feature API.

    ``size`` is the teacher's (height, width). Resizing is bilinear without antialiasing: the antialiased
    kernel has no ONNX export, and for the usual case (upsampling small images) it changes nothing. A
    1-channel student input is repeated to the teacher's 3 channels after un-normalising (grey as R=G=B).
    """

    def __init__(
        self,
        model: nn.Module,
        size: tuple[int, int],
        mean_in: Sequence[float],
        std_in: Sequence[float],
        mean_out: Sequence[float],
        std_out: Sequence[float],
    ) -> None:
        super().__init__()
        self.model = model
        self.size = (int(size[0]), int(size[1]))
        # Non-persistent: the wrapper adds nothing to the teacher's state dict but the "model." prefix.
        for name, values in (
            ("mean_in", mean_in),
            ("std_in", std_in),
            ("mean_out", mean_out),
            ("std_out", std_out),
        ):
            self.register_buffer(name, _stats(values, name), persistent=False)
        if self.mean_in.shape != self.std_in.shape or self.mean_out.shape != self.std_out.shape:
            raise ModelError("InputAdapter: mean and std must have one value per channel on each side")
        self.in_channels = self.mean_in.shape[1]
        self.out_channels = self.mean_out.shape[1]
        if self.in_channels != self.out_channels and self.in_channels != 1:
            raise ModelError(
                f"InputAdapter cannot map {self.in_channels} input channels to "
                f"{self.out_channels}; only 1 -> N (grey) or N -> N"
            )

    # The feature API, delegated: distillers read these from the teacher.
    @property
    def classifier(self) -> nn.Module:
        return self.model.classifier

    @property
    def feature_dim(self) -> int:
        return int(self.model.feature_dim)

    @property
    def num_classes(self) -> int:
        return int(self.model.num_classes)

    def adapt(self, x: Tensor) -> Tensor:
        """The teacher-side view of a student-side batch."""
        raw = x * self.std_in.to(x.dtype) + self.mean_in.to(x.dtype)
        if self.in_channels != self.out_channels:
            raw = raw.expand(-1, self.out_channels, -1, -1)
        # Unconditional, so the traced graph has no shape-dependent branch: at the same size, bilinear with
        # align_corners=False samples every pixel at its own centre (the identity).
        raw = F.interpolate(raw, size=self.size, mode="bilinear", align_corners=False, antialias=False)
        return (raw - self.mean_out.to(x.dtype)) / self.std_out.to(x.dtype)

    def forward_features(self, x: Tensor) -> Tensor:
        return self.model.forward_features(self.adapt(x))

    def forward(self, x: Tensor) -> Tensor:
        return self.model(self.adapt(x))


__all__ = ["InputAdapter"]

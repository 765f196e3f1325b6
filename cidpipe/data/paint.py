"""Colour painting used by the bias wrapper: vectorised over a batch of uint8 NCHW images.

Two styles (see cidpipe/data/bias.py for when each applies):
- ``background``: every pixel whose brightest channel is below ``threshold`` takes the sample's colour,
  brighter (foreground) pixels stay as they are — grayscale digits / clothes on a coloured ground.
- ``border``: a frame ``width`` pixels wide takes the colour — colour photos whose content we keep.
"""

from __future__ import annotations

import torch
from torch import Tensor

# Of 255: the background of the upsampled digits and of padded Fashion-MNIST is exactly 0.
BACKGROUND_THRESHOLD = 16
BORDER_WIDTH = 4


def paint(images: Tensor, colours: Tensor, style: str, *, threshold: int = BACKGROUND_THRESHOLD,
          width: int = BORDER_WIDTH) -> Tensor:
    """Return a painted copy. images uint8 [N,3,H,W]; colours uint8 [N,3] (one RGB colour per sample)."""
    if images.shape[1] != 3:
        raise ValueError(f"colour bias needs 3-channel images, got {images.shape[1]} channels")
    fill = colours.to(device=images.device, dtype=torch.uint8)[:, :, None, None].expand_as(images)
    if style == "background":
        mask = (images.amax(dim=1, keepdim=True) < threshold).expand_as(images)
    elif style == "border":
        _, _, height, width_px = images.shape
        rows = torch.arange(height, device=images.device)
        cols = torch.arange(width_px, device=images.device)
        frame = ((rows[:, None] < width) | (rows[:, None] >= height - width)
                 | (cols[None, :] < width) | (cols[None, :] >= width_px - width))
        mask = frame[None, None].expand_as(images)
    else:
        raise ValueError(f"unknown paint style {style!r}: expected 'background' or 'border'")
    return torch.where(mask, fill, images)

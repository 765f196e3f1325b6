"""Batched image transforms on uint8 NCHW tensors, run on whatever device the batch lives on.

The random numbers (crop offsets, flip coins) are drawn on the CPU from the caller's generator and then
moved, so a seeded run produces the same augmented batches on CPU and GPU. Crop and flip are one gather:
no per-sample Python loop, no PIL.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def draw_crop_flip(
    batch: int, pad: int, hflip: bool, generator: torch.Generator | None
) -> tuple[Tensor, Tensor, Tensor]:
    """Per-sample (row offset, column offset, flip) with offsets uniform over 0..2*pad and P(flip)=0.5."""
    offsets = torch.randint(0, 2 * pad + 1, (2, batch), generator=generator)
    if hflip:
        flips = torch.rand(batch, generator=generator) < 0.5
    else:
        flips = torch.zeros(batch, dtype=torch.bool)
    return offsets[0], offsets[1], flips


def crop_flip(images: Tensor, pad: int, rows: Tensor, cols: Tensor, flips: Tensor) -> Tensor:
    """Zero-pad by ``pad``, crop back to H x W at (rows, cols), mirror where ``flips``; same dtype out.

    Equal to torchvision's RandomCrop(size, padding=pad) followed by RandomHorizontalFlip, given the same
    offsets and coins; the padded border is 0 (black) before normalisation, as there.
    """
    n, _, height, width = images.shape
    device = images.device
    padded = F.pad(images, (pad, pad, pad, pad)) if pad > 0 else images
    row_ar = torch.arange(height, device=device)
    col_ar = torch.arange(width, device=device)
    # Non-blocking: the offsets come from the CPU generator and must not force a host sync per batch.
    row_idx = rows.to(device, non_blocking=True)[:, None] + row_ar  # [N, H]
    # A mirrored crop reads its columns right to left: fold the flip into the gather index.
    col_step = torch.where(flips.to(device, non_blocking=True)[:, None], width - 1 - col_ar, col_ar)
    col_idx = cols.to(device, non_blocking=True)[:, None] + col_step  # [N, W]
    batch_idx = torch.arange(n, device=device)[:, None, None]
    hwc = padded.permute(0, 2, 3, 1)[batch_idx, row_idx[:, :, None], col_idx[:, None, :]]  # [N, H, W, C]
    return hwc.permute(0, 3, 1, 2).contiguous()


def random_crop_flip(images: Tensor, pad: int, hflip: bool, generator: torch.Generator | None) -> Tensor:
    rows, cols, flips = draw_crop_flip(images.shape[0], pad, hflip, generator)
    return crop_flip(images, pad, rows, cols, flips)


def normalise(images: Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> Tensor:
    """uint8 [N,C,H,W] in 0..255 -> float32 (x/255 - mean) / std, computed on the images' device."""
    channels = images.shape[1]
    # Built on the CPU and copied without blocking: torch.tensor(..., device="cuda") would sync the host.
    shape = (1, channels, 1, 1)
    mean_t = torch.tensor(mean, dtype=torch.float32).view(shape).to(images.device, non_blocking=True)
    std_t = torch.tensor(std, dtype=torch.float32).view(shape).to(images.device, non_blocking=True)
    return images.float().div_(255.0).sub_(mean_t).div_(std_t)


def resize_uint8(images: Tensor, size: int | tuple[int, int]) -> Tensor:
    """Bilinear (antialiased when shrinking) resize of uint8 NCHW images to size x size or (h, w), rounded."""
    hw = (size, size) if isinstance(size, int) else tuple(size)
    if tuple(images.shape[-2:]) == hw:
        return images
    out = F.interpolate(images.float(), size=hw, mode="bilinear", align_corners=False,
                        antialias=True)
    return out.round_().clamp_(0, 255).to(torch.uint8)

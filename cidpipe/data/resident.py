"""Where a split lives during training: data.device_resident ("auto" | "on" | "off")."""

from __future__ import annotations

from typing import Literal

import torch

from cidpipe.data.split import Split
from cidpipe.data.tensor_split import TensorSplit

# "auto" keeps a tensor split on the accelerator only if it takes at most this share of its free memory,
# leaving the rest to the model, activations and the optimiser.
AUTO_RESIDENT_MEMORY_SHARE = 0.25


def _fits_on(split: TensorSplit, device: torch.device) -> bool:
    if device.type != "cuda":
        return True
    free_bytes, _ = torch.cuda.mem_get_info(device)
    return split.images.numel() * split.images.element_size() <= AUTO_RESIDENT_MEMORY_SHARE * free_bytes


def place_split(split: Split, device: str | torch.device,
                mode: Literal["auto", "on", "off"] = "auto") -> Split:
    """The split to iterate for training on ``device``.

    off: unchanged (batches are gathered where the images are and moved per batch).
    auto: tensor splits move to ``device`` when they fit (see AUTO_RESIDENT_MEMORY_SHARE); file-backed
    splits stay on disk. on: every split is moved, file-backed ones decoded into memory once.
    """
    device = torch.device(device)
    if mode == "off":
        return split
    if isinstance(split, TensorSplit):
        if split.device == device or (mode == "auto" and not _fits_on(split, device)):
            return split
        return split.to_device(device)
    return split.to_device(device) if mode == "on" else split

"""Accuracy of a prediction function on a data split (no gradients, eval mode)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from cidpipe.data.base import Split


@torch.no_grad()
def top1_accuracy(
    predict: Callable[[torch.Tensor], torch.Tensor],
    split: Split,
    *,
    device: str,
    batch_size: int = 256,
    channels_last: bool = False,
) -> float:
    correct = torch.zeros((), dtype=torch.long, device=device)
    total = 0
    for x, y in split.batches(batch_size, shuffle=False, augment=False, device=device):
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        correct += (predict(x).argmax(1) == y).sum()
        total += y.numel()
    return 100.0 * correct.item() / max(total, 1)


@torch.no_grad()
def predictions(
    predict: Callable[[torch.Tensor], torch.Tensor], split: Split, *, device: str, batch_size: int = 256
) -> torch.Tensor:
    out = [
        predict(x).argmax(1).cpu()
        for x, _ in split.batches(batch_size, shuffle=False, augment=False, device=device)
    ]
    return torch.cat(out) if out else torch.empty(0, dtype=torch.long)

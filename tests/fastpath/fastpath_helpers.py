"""Small shared builders for the fast-path tests: tiny CID problems, run on the fast and the plain path."""

from __future__ import annotations

import copy

import numpy as np
import torch

from cidpipe.data.split import batch_order
from cidpipe.data.tensor_split import TensorSplit
from cidpipe.distill.config import CIDConfig, DistillConfig, KDConfig
from cidpipe.distill.registry import build_distiller
from cidpipe.models import build_model
from cidpipe.train_config import OptimConfig
from cidpipe.training.loop import autocast_context
from cidpipe.training.schedule import build_optimizer
from cidpipe.training.step import train_step

MEAN, STD = (0.5, 0.45, 0.4), (0.25, 0.25, 0.25)
LR = 0.01


def tiny_split(n: int = 192, classes: int = 6, seed: int = 0) -> TensorSplit:
    """Random uint8 images whose class shifts their brightness (learnable), few classes (n_k >= 2)."""
    rng = np.random.default_rng(seed)
    labels = torch.from_numpy(rng.integers(0, classes, size=n).astype(np.int64))
    noise = rng.integers(0, 128, size=(n, 3, 16, 16))
    images = noise + (labels.numpy() * (127 // classes))[:, None, None, None]
    return TensorSplit(torch.from_numpy(images.astype(np.uint8)), labels, MEAN, STD)


def tiny_pair(classes: int, seed: int = 0):
    torch.manual_seed(seed)
    return build_model("tinycnn", classes), build_model("tinycnn", classes).eval()


def make_distiller(method: str, student, teacher, classes: int, epochs: int = 3, warmup: int = 1):
    cfg = DistillConfig(method=method, cid=CIDConfig(warmup_epochs=warmup), kd=KDConfig())
    return build_distiller(method, copy.deepcopy(student), copy.deepcopy(teacher), cfg,
                           num_classes=classes, epochs=epochs)


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    return batch_order(n, shuffle=True, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))


class FastPath:
    """The training loop's step (train_step) over TensorSplit batches, as fit() runs it (fp32 by default)."""

    def __init__(self, distiller, device: str = "cpu", amp: str = "off", fused: bool | None = None) -> None:
        self.distiller = distiller.to(device)
        self.device = device
        optim = OptimConfig(amp=amp)
        self.optimizer = build_optimizer(distiller.param_groups(optim.weight_decay), optim, LR, device,
                                         fused=fused)
        self.amp, self.scaler = autocast_context(optim, device)

    def epoch(self, split: TensorSplit, seed: int, epoch: int, *, use_index: bool = False,
              batch_size: int = 64) -> list[float]:
        self.distiller.on_epoch_start(epoch)
        self.distiller.train()
        generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
        losses = []
        for x, y, index in split.batches(batch_size, shuffle=True, augment=False, generator=generator,
                                         device=self.device, with_index=True):
            out = train_step(self.distiller, self.optimizer, self.amp, self.scaler, x, y,
                             index if use_index else None)
            losses.append(float(out.loss.detach()))
        self.distiller.on_epoch_end(epoch)
        return losses

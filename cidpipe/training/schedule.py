"""Optimiser and LR schedule of the paper's recipe (SGD Nesterov, step decay), scaled to any length."""

from __future__ import annotations

import math

import torch

from cidpipe.train_config import OptimConfig


def scaled_milestones(cfg: OptimConfig) -> list[int]:
    """Milestones written for ``reference_epochs`` (150/180/210 of 240) mapped onto ``cfg.epochs``."""
    scale = cfg.epochs / cfg.reference_epochs
    return sorted({max(1, round(m * scale)) for m in cfg.milestones if round(m * scale) < cfg.epochs})


def learning_rate(cfg: OptimConfig, base_lr: float, epoch: int) -> float:
    if cfg.schedule == "cosine":
        return 0.5 * base_lr * (1 + math.cos(math.pi * epoch / cfg.epochs))
    decays = sum(1 for m in scaled_milestones(cfg) if epoch >= m)
    return base_lr * cfg.gamma**decays


def build_optimizer(
    param_groups: list[dict], cfg: OptimConfig, base_lr: float, device: str
) -> torch.optim.SGD:
    # The fused kernel only exists for CUDA tensors; foreach is the fast path on CPU.
    fused = device.startswith("cuda")
    return torch.optim.SGD(
        param_groups,
        lr=base_lr,
        momentum=cfg.momentum,
        nesterov=cfg.nesterov,
        fused=fused or None,
        foreach=None if fused else True,
    )


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr

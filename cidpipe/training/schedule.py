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
    param_groups: list[dict], cfg: OptimConfig, base_lr: float, device: str, fused: bool | None = None
) -> torch.optim.SGD:
    """SGD of the paper; the fused kernel on CUDA (one launch for all parameters), foreach on the CPU."""
    fused = device.startswith("cuda") if fused is None else fused
    optimizer = torch.optim.SGD(
        param_groups,
        lr=base_lr,
        momentum=cfg.momentum,
        nesterov=cfg.nesterov,
        fused=fused or None,
        foreach=None if fused else True,
    )
    ensure_momentum_buffers(optimizer)
    return optimizer


def ensure_momentum_buffers(optimizer: torch.optim.SGD) -> None:
    """Give every parameter a zero momentum buffer where it has none (call again after load_state_dict).

    Why: torch's fused SGD (measured with torch 2.11 on CUDA and 2.14 on CPU) breaks in two ways when
    buffers are created lazily: a step where some parameters have a buffer and others do not (CID's head
    g gets its first gradient after the warm-up epochs) fails with "expected Tensor ... got NoneType";
    and when the GradScaler skips the first step for inf gradients, the buffers it allocated stay
    uninitialised memory and the next step turns the weights NaN. A zero buffer changes nothing: with
    dampening 0 the first update is momentum * 0 + grad, exactly torch's lazily created buffer = grad.
    """
    for group in optimizer.param_groups:
        if group["momentum"] == 0:
            continue
        if group["dampening"] != 0:
            raise ValueError("zero momentum buffers are only exact without dampening")
        for param in group["params"]:
            state = optimizer.state[param]
            if state.get("momentum_buffer") is None:
                state["momentum_buffer"] = torch.zeros_like(param, memory_format=torch.preserve_format)


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr

"""Optimiser and LR schedule: the paper's recipe (SGD Nesterov, step decay) scaled to any length, plus what
fine-tuning needs (AdamW, linear warm-up, per-group LR factors for backbone and head).

At the defaults (sgd, warmup_epochs 0, both LR factors 1) the optimizer, its parameter groups and every
learning rate are exactly what they were before those options existed.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from cidpipe.train_config import OptimConfig


def scaled_milestones(cfg: OptimConfig) -> list[int]:
    """Milestones written for ``reference_epochs`` (150/180/210 of 240) mapped onto ``cfg.epochs``."""
    scale = cfg.epochs / cfg.reference_epochs
    return sorted({max(1, round(m * scale)) for m in cfg.milestones if round(m * scale) < cfg.epochs})


def learning_rate(cfg: OptimConfig, base_lr: float, epoch: int) -> float:
    if cfg.schedule == "cosine":
        lr = 0.5 * base_lr * (1 + math.cos(math.pi * epoch / cfg.epochs))
    else:
        decays = sum(1 for m in scaled_milestones(cfg) if epoch >= m)
        lr = base_lr * cfg.gamma**decays
    if epoch < cfg.warmup_epochs:
        # Linear ramp by epoch (timm's default, the LR is set once per epoch here): (e+1)/(W+1) never
        # starts at 0, so no epoch is wasted, and reaches the schedule itself at e = W.
        lr *= (epoch + 1) / (cfg.warmup_epochs + 1)
    return lr


def build_optimizer(
    param_groups: list[dict], cfg: OptimConfig, base_lr: float, device: str, fused: bool | None = None
) -> torch.optim.Optimizer:
    """SGD of the paper, or AdamW; the fused kernel on CUDA (one launch for all parameters), foreach on
    the CPU. Groups carrying ``lr_scale`` (see ``lr_scaled_groups``) start at base_lr * lr_scale."""
    fused = device.startswith("cuda") if fused is None else fused
    for group in param_groups:
        if "lr_scale" in group:
            group["lr"] = base_lr * group["lr_scale"]
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(param_groups, lr=base_lr, betas=tuple(cfg.betas),
                                 weight_decay=cfg.weight_decay, fused=fused or None,
                                 foreach=None if fused else True)
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
    if not isinstance(optimizer, torch.optim.SGD):
        return  # AdamW creates its state on the first step with no such failure; nothing to fill in
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
        # Only split groups carry a factor: the default groups get ``lr`` itself, not lr * 1.0.
        group["lr"] = lr * group["lr_scale"] if "lr_scale" in group else lr


def lr_scaled_groups(groups: list[dict], distiller: nn.Module, cfg: OptimConfig) -> list[dict]:
    """``groups`` split into backbone and head parts carrying cfg's ``lr_scale``s; unchanged at 1 and 1.

    Backbone: the student's parameters outside ``student.classifier``. Head: everything else trainable,
    i.e. the classifier and the method's own new modules (CID's g, regressors), which are as freshly
    initialised as a new classifier on a pretrained backbone.
    """
    if cfg.backbone_lr_scale == 1.0 and cfg.head_lr_scale == 1.0:
        return groups
    student = getattr(distiller, "student", distiller)
    classifier = getattr(student, "classifier", None)
    head_ids = {id(p) for p in classifier.parameters()} if isinstance(classifier, nn.Module) else set()
    backbone_ids = {id(p) for p in student.parameters()} - head_ids
    split: list[dict] = []
    for group in groups:
        for part, scale in (("backbone", cfg.backbone_lr_scale), ("head", cfg.head_lr_scale)):
            params = [p for p in group["params"] if (id(p) in backbone_ids) == (part == "backbone")]
            if params:
                name = f"{group.get('name', 'params')}/{part}"
                split.append({**group, "name": name, "params": params, "lr_scale": float(scale)})
    return split

"""Everything a training step needs, set up once per fit: device placement, optimizer, DDP, AMP, compile.

The order of the setup calls is the order ``fit`` always used; none of them draws from the global RNG, so
a resumed run (which restores that RNG afterwards) sees exactly the state a straight run sees.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from cidpipe.train_config import OptimConfig
from cidpipe.training import distributed
from cidpipe.training.schedule import build_optimizer, lr_scaled_groups
from cidpipe.training.step import compiled_step
from cidpipe.training.tracking import TrackingSpec


def autocast_context(cfg: OptimConfig, device: str):
    """(autocast context, GradScaler or None) for ``cfg.amp`` on ``device``; auto = bf16 on CUDA only."""
    mode = cfg.amp
    if mode == "auto":
        mode = "bf16" if device.startswith("cuda") else "off"
    if mode == "off":
        return contextlib.nullcontext(), None
    dtype = torch.bfloat16 if mode == "bf16" else torch.float16
    scaler = torch.amp.GradScaler("cuda") if mode == "fp16" and device.startswith("cuda") else None
    return torch.autocast(device_type=device.split(":")[0], dtype=dtype), scaler


@dataclass
class RunSettings:
    """How one fit runs (as opposed to what it optimises, the OptimConfig)."""

    device: str
    seed: int
    batch_size: int
    eval_batch_size: int
    base_lr: float
    checkpoint_path: Path
    resume: bool = True
    label: str = "train"
    augment: bool = True
    # distill.reuse_teacher_outputs: teacher outputs computed once per sample (see step.py).
    reuse_teacher_outputs: bool = False
    # history.csv and report.trackers (tracking.py); None tracks nothing. Never changes what is trained.
    tracking: TrackingSpec | None = None


@dataclass
class Engine:
    """The distiller, its (possibly DDP-wrapped, compiled) step and optimizer, and the step's settings."""

    distiller: torch.nn.Module
    step_forward: Callable[..., Any]
    optimizer: torch.optim.Optimizer
    amp: contextlib.AbstractContextManager
    scaler: torch.amp.GradScaler | None
    device: str
    channels_last: bool
    rank: int
    world: int

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """A batch in the memory format the model was moved to."""
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x


def build_engine(distiller: torch.nn.Module, cfg: OptimConfig, device: str, base_lr: float) -> Engine:
    channels_last = cfg.channels_last if cfg.channels_last is not None else device.startswith("cuda")
    distiller.to(device)
    if channels_last:
        distiller.to(memory_format=torch.channels_last)
    groups = lr_scaled_groups(distiller.param_groups(cfg.weight_decay), distiller, cfg)
    optimizer = build_optimizer(groups, cfg, base_lr, device)
    if hasattr(distiller, "set_label_smoothing"):
        # Before compile: the smoothing is a constant of the compiled step.
        distiller.set_label_smoothing(cfg.label_smoothing)
    find_unused = bool(getattr(distiller, "ddp_find_unused_parameters", False))
    train_module = distributed.wrap(distiller, device, find_unused_parameters=find_unused)
    step_forward = compiled_step(train_module, cfg, device)
    amp, scaler = autocast_context(cfg, device)
    rank, world = distributed.rank_and_world()
    return Engine(distiller, step_forward, optimizer, amp, scaler, device, channels_last, rank, world)

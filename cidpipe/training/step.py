"""The training loop's per-step pieces: one optimisation step, and the teacher-output cache it may use.

Kept apart from loop.py so benchmarks and tests run exactly the step ``fit`` runs.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import torch
from rich.console import Console

from cidpipe.data.split import Split
from cidpipe.errors import ConfigError
from cidpipe.train_config import OptimConfig


def check_compile_device(cfg: OptimConfig, device: str) -> None:
    """Refuse CUDA graphs off CUDA before any work starts (the stage calls this before opening its dir)."""
    if cfg.compile and cfg.compile_mode == "reduce-overhead" and not device.startswith("cuda"):
        raise ConfigError(f"train.compile_mode reduce-overhead replays CUDA graphs and needs a CUDA device "
                          f"(this run uses {device}); use --device cuda or compile_mode: default")


def compiled_step(module: torch.nn.Module, cfg: OptimConfig, device: str) -> Callable[..., Any]:
    """The module's forward as the loop calls it: itself, or torch.compile'd with ``cfg.compile_mode``.

    ``reduce-overhead`` records the forward and backward as CUDA graphs and replays them; each call then
    starts a new graph generation, so a step's outputs stay valid until the next step (the loop reads
    them at once).
    """
    if not cfg.compile:
        return module
    check_compile_device(cfg, device)
    # dynamic=False: an epoch has two batch sizes (full batches and the tail), so two static graphs; by
    # default torch would recompile at the tail into one dynamic-shape graph with slower generic kernels.
    compiled = torch.compile(module, mode=cfg.compile_mode, dynamic=False)
    if cfg.compile_mode != "reduce-overhead":
        return compiled

    def graph_step(*args: Any, **kwargs: Any) -> Any:
        torch.compiler.cudagraph_mark_step_begin()
        return compiled(*args, **kwargs)

    return graph_step


def train_step(
    step_forward: Callable[..., Any],
    optimizer: torch.optim.Optimizer,
    amp: contextlib.AbstractContextManager,
    scaler: torch.amp.GradScaler | None,
    x: torch.Tensor,
    y: torch.Tensor,
    index: torch.Tensor | None = None,
) -> Any:
    """One optimisation step (forward under ``amp``, backward, optimizer step); returns the StepOutput.

    Nothing here reads a tensor back to the host: the caller accumulates metrics on the device.
    ``index`` (the batch's storage indices) is passed on only when given, for cached teacher outputs.
    """
    with amp:
        out = step_forward(x, y) if index is None else step_forward(x, y, index=index)
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(out.loss).backward()
        scaler.step(optimizer)
        scaler.update()
    else:
        out.loss.backward()
        optimizer.step()
    return out


def cache_teacher_outputs(
    distiller: torch.nn.Module,
    train: Split,
    device: str,
    batch_size: int,
    amp: contextlib.AbstractContextManager,
    channels_last: bool,
    console: Console,
    *,
    label: str,
    augmented: bool,
) -> None:
    """Run the teacher once over the un-augmented training split and keep its outputs per sample.

    Exact when the training split is not augmented. With augmentation the student sees augmented images
    while the cached teacher saw the plain ones: a different (approximate) method, hence the warning.
    """
    if getattr(distiller, "teacher", None) is None:
        return
    if augmented:
        message = (
            f"{label}: distill.reuse_teacher_outputs with data.augment on is an APPROXIMATION: the "
            "teacher's outputs come from un-augmented images while the student sees augmented ones; "
            "set data.augment: false for exact reuse"
        )
        warnings.warn(message, UserWarning, stacklevel=3)
        console.print(f"[bold yellow]WARNING[/]: {message}")

    def plain_batches() -> Iterator[tuple[torch.Tensor, ...]]:
        for x, y, index in train.batches(batch_size, shuffle=False, augment=False, device=device,
                                         with_index=True):
            yield (x.contiguous(memory_format=torch.channels_last) if channels_last else x), y, index

    with amp:
        distiller.build_teacher_cache(plain_batches(), len(train))

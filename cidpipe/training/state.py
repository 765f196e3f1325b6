"""What a fit carries from epoch to epoch, and across a resume: progress, model selection, history.

The epoch checkpoint holds this state next to the distiller's and optimizer's state dicts and the global
RNG state, so a run killed after any epoch continues exactly as if it had never stopped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from cidpipe.training.checkpoint import load_checkpoint, save_checkpoint
from cidpipe.training.schedule import ensure_momentum_buffers


@dataclass
class FitState:
    """``next_epoch``: the first epoch still to train. ``selected_*``: the epoch model selection keeps.

    With ``select: best_val`` the kept weights are copied whenever validation improves. With
    ``select: last`` they are simply the distiller's own after the last epoch, so nothing is copied
    (``selected_weights`` stays None) and the checkpoint does not hold the model twice.
    """

    next_epoch: int = 0
    selected_weights: dict[str, torch.Tensor] | None = None
    selected_epoch: int = -1
    selected_val_top1: float | None = -1.0
    history: list[dict[str, Any]] = field(default_factory=list)
    resumed_from_epoch: int | None = None

    def select(self, select: str, record: dict[str, Any], distiller: torch.nn.Module) -> None:
        """Apply model selection to the epoch just finished (its ``record``); never looks at test data."""
        val_top1 = record["val_top1"]
        owner = getattr(distiller, "module", distiller)  # DistributedDataParallel wraps the distiller
        if record["epoch"] < int(getattr(owner, "first_selectable_epoch", 0)):
            return  # e.g. a CID warm-up epoch: its model is not the one the method deploys
        if select == "last":
            self.selected_epoch, self.selected_val_top1 = record["epoch"], val_top1
        elif val_top1 > self.selected_val_top1:
            self.selected_epoch, self.selected_val_top1 = record["epoch"], val_top1
            self.selected_weights = {k: v.detach().cpu().clone() for k, v in distiller.state_dict().items()}

    def final_weights(self, distiller: torch.nn.Module) -> dict[str, torch.Tensor]:
        if self.selected_weights is not None:
            return self.selected_weights
        return {k: v.detach().cpu().clone() for k, v in distiller.state_dict().items()}


def save_fit_checkpoint(
    path: Path, state: FitState, distiller: torch.nn.Module, optimizer: torch.optim.Optimizer
) -> None:
    """The checkpoint after epoch ``state.next_epoch - 1``; the keys are the checkpoint format's."""
    save_checkpoint(
        path,
        {
            "epoch": state.next_epoch,
            "distiller": distiller.state_dict(),
            "optimizer": optimizer.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "best_state": state.selected_weights,
            "best_epoch": state.selected_epoch,
            "best_val_top1": state.selected_val_top1,
            "history": state.history,
        },
    )


def restore_fit_checkpoint(
    path: Path, distiller: torch.nn.Module, optimizer: torch.optim.Optimizer
) -> FitState:
    """Load the checkpoint into ``distiller``, ``optimizer`` and the global RNG; return the fit state."""
    saved = load_checkpoint(path)
    distiller.load_state_dict(saved["distiller"])
    optimizer.load_state_dict(saved["optimizer"])
    ensure_momentum_buffers(optimizer)  # a checkpoint from before the head's first step lacks its buffer
    torch.set_rng_state(saved["torch_rng"])
    return FitState(
        next_epoch=saved["epoch"],
        selected_weights=saved["best_state"],
        selected_epoch=saved["best_epoch"],
        selected_val_top1=saved["best_val_top1"],
        history=list(saved["history"]),
        resumed_from_epoch=saved["epoch"],
    )

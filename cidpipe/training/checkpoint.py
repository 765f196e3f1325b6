"""Resumable training checkpoints: written atomically every epoch, loaded without unpickling objects."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from cidpipe.atomic import atomic_write_with
from cidpipe.errors import ModelError

CHECKPOINT_FORMAT = 1


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    atomic_write_with(path, lambda tmp: torch.save({"format": CHECKPOINT_FORMAT, **state}, tmp))


def load_checkpoint(path: Path) -> dict[str, Any]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling/zip failure means the same thing to the user
        raise ModelError(
            f"checkpoint {path} is corrupt or not a cidpipe checkpoint "
            f"({type(exc).__name__}); delete it to start over"
        ) from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ModelError(f"checkpoint {path} is not a cidpipe training checkpoint; delete it to start over")
    return state

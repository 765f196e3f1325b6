"""Resumable training checkpoints: written atomically every epoch, loaded without unpickling objects."""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

import torch

from cidpipe.atomic import atomic_write_with
from cidpipe.errors import ModelError, UsageError

CHECKPOINT_FORMAT = 1
_NO_ROOM = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
# torch.save's zip writer reports a failed write as a RuntimeError without an errno, e.g.
# "PytorchStreamWriter failed writing file data/0: file write failed".
_TORCH_WRITE_FAILED = ("PytorchStreamWriter failed", "file write failed", "unexpected pos")


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` atomically; a full disk (or another failed write) is a one-line UsageError (exit 2).

    UsageError, like an unwritable --out (cidpipe/atomic.py): the fix is where the run writes (free space
    or another --out), not the recipe or the data. The previous checkpoint stays intact and the temp file
    is removed, so the next run resumes from it.
    """
    try:
        atomic_write_with(path, lambda tmp: torch.save({"format": CHECKPOINT_FORMAT, **state}, tmp))
    except OSError as err:
        if err.errno in _NO_ROOM:
            raise UsageError(
                f"cannot write checkpoint {path}: no space left ({errno.errorcode[err.errno]}); free space "
                "on that disk or pass --out on one with room, then rerun to resume"
            ) from err
        raise UsageError(
            f"cannot write checkpoint {path}: {err.strerror or err}; check that disk, or pass another --out"
        ) from err
    except RuntimeError as err:
        if not any(marker in str(err) for marker in _TORCH_WRITE_FAILED):
            raise  # not a write failure: a bug that must show, not be renamed
        raise UsageError(
            f"cannot write checkpoint {path}: the write failed (disk full?); free space on that disk or "
            "pass --out on one with room, then rerun to resume"
        ) from err


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

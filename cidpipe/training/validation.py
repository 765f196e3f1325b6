"""Validation after each epoch: the only data model selection ever sees (the test split never is).

With ``data.val_fraction: 0`` there is no validation split: an epoch then has no validation top-1 (None)
and only ``select: last`` is possible.
"""

from __future__ import annotations

from cidpipe.data.split import Split
from cidpipe.errors import ConfigError
from cidpipe.train_config import OptimConfig
from cidpipe.training import distributed
from cidpipe.training.accuracy import top1_accuracy
from cidpipe.training.engine import Engine


def check_selection(cfg: OptimConfig, val: Split, label: str) -> None:
    """Refuse ``select: best_val`` without validation samples, before any compute is spent."""
    if cfg.select == "best_val" and len(val) == 0:
        raise ConfigError(
            f"{label}: train.select is best_val but the validation split is empty (data.val_fraction: 0); "
            "set train.select: last to keep the last epoch, or a data.val_fraction above 0"
        )


def validate(engine: Engine, val: Split, batch_size: int) -> float | None:
    """Validation top-1 of the distiller's ``predict`` (call in eval mode); None without a validation split.

    Rank 0 alone evaluates and every rank takes its number, so model selection agrees across ranks.
    """
    if len(val) == 0:  # the same on every rank: no collective is skipped by some ranks only
        return None
    val_top1 = 0.0
    if engine.rank == 0:
        val_top1 = top1_accuracy(
            engine.distiller.predict,
            val,
            device=engine.device,
            batch_size=batch_size,
            channels_last=engine.channels_last,
        )
    return distributed.broadcast_float(val_top1, engine.device)

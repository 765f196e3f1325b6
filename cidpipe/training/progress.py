"""The fit's progress bar (rank 0 only) and, when stderr is not a terminal, one log line per epoch."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class FitProgress:
    """Counts training steps over all epochs; ``start_epoch`` > 0 after a resume."""

    def __init__(
        self, console: Console, label: str, epochs: int, steps_per_epoch: int, start_epoch: int, *, rank: int
    ) -> None:
        self.console, self.label, self.epochs, self.steps_per_epoch = console, label, epochs, steps_per_epoch
        self.start_epoch, self.rank = start_epoch, rank
        self.bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            disable=rank != 0,
            transient=False,
        )

    def __enter__(self) -> FitProgress:
        self.bar.__enter__()
        self.task = self.bar.add_task(
            self.label,
            total=self.epochs * self.steps_per_epoch,
            completed=self.start_epoch * self.steps_per_epoch,
            info="",
        )
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.bar.__exit__(*exc_info)

    def step(self, epoch: int, step: int, running_loss: float) -> None:
        self.bar.update(
            self.task,
            completed=epoch * self.steps_per_epoch + step + 1,
            info=f"epoch {epoch + 1}/{self.epochs} loss {running_loss:.3f}",
        )

    def epoch_done(self, record: dict[str, Any]) -> None:
        epoch, val_top1 = record["epoch"], record["val_top1"]
        val_bar = "" if val_top1 is None else f" val {val_top1:.1f}%"
        self.bar.update(
            self.task,
            completed=(epoch + 1) * self.steps_per_epoch,
            info=f"epoch {epoch + 1}/{self.epochs} loss {record['train_loss']:.3f}{val_bar}",
        )
        if not self.console.is_terminal and self.rank == 0:
            val_line = "no val" if val_top1 is None else f"val {val_top1:.2f}%"
            self.console.print(
                f"{self.label} epoch {epoch + 1}/{self.epochs}: loss {record['train_loss']:.4f} "
                f"train {record['train_top1']:.1f}% {val_line} ({record['seconds']:.1f}s)"
            )

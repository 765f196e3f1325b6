"""Per-epoch tracking of a fit: the stage's ``history.csv`` and the recipe's ``report.trackers``.

The loop hands every finished epoch's record to the trackers on rank 0, right after that epoch's checkpoint
is written, so every tracked epoch is one a resume keeps. A resumed fit opens its trackers with the
checkpoint's history and each one reconciles with it, which keeps them exact after a kill -9:

* csv: ``history.csv`` is rewritten from the checkpoint's history (and one row more per epoch); the pipeline
  prunes a failed stage's work directory to its checkpoints, so the checkpoint is the only exact source.
* tensorboard: the event files of an earlier process in this fit's log directory are removed and the
  history is replayed, so no epoch appears twice or goes missing, whichever reader opens the directory.
* mlflow: the same MLflow run is continued (its id is kept beside the checkpoint) and only the epochs it
  has not logged yet are logged.

Tracking is best-effort and never changes what is trained: it reads the records and draws no random
numbers. A TensorBoard or MLflow failure (an unreachable tracking server) is one warning line and that
tracker stops; only ``history.csv``, which the stage publishes, may fail the fit (as a checkpoint would).
"""

from __future__ import annotations

import csv
import importlib.util
import io
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from rich.console import Console
from rich.markup import escape

from cidpipe.atomic import atomic_write_text
from cidpipe.errors import MissingDependency, UsageError

# report.trackers names, and the module each one needs.
TRACKER_MODULES = {"csv": None, "tensorboard": "tensorboard", "mlflow": "mlflow"}
INSTALL_HINT = "pip install 'cidpipe[tracking]'"
HISTORY_CSV = "history.csv"


@dataclass(frozen=True)
class TrackingSpec:
    """Where a stage's fits track (RunSettings.tracking; None: nothing is tracked, as for a bare ``fit``).

    ``history_csv``: the stage's history.csv, written for every fit whatever ``trackers`` lists (csv there is
    accepted and changes nothing). ``log_dir``: TensorBoard writes under ``log_dir/seed<seed>``. ``tags``:
    run / stage / stage_id, given to MLflow (the MLflow experiment is named after ``tags["run"]``).
    """

    history_csv: Path
    log_dir: Path
    trackers: tuple[str, ...] = ()
    tags: dict[str, str] = field(default_factory=dict)


class Tracker(Protocol):
    def on_epoch(self, record: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


def check_trackers_available(names: list[str] | tuple[str, ...]) -> None:
    """Refuse, before any compute, a tracker whose library is not installed (a one-line error, exit 7)."""
    for name in names:
        module = TRACKER_MODULES.get(name)
        if module is not None and importlib.util.find_spec(module) is None:
            raise MissingDependency(
                f"report.trackers lists {name} but the {module} package is not installed; {INSTALL_HINT}"
            )


def epoch_metrics(record: dict[str, Any]) -> dict[str, float]:
    """The scalars TensorBoard and MLflow get for an epoch record (no val_top1 without a validation split)."""
    metrics = {"loss/total": record["train_loss"]}
    metrics.update({f"loss/{name}": value for name, value in (record.get("parts") or {}).items()})
    metrics["top1/train"] = record["train_top1"]
    if record.get("val_top1") is not None:
        metrics["top1/val"] = record["val_top1"]
    metrics["lr"], metrics["epoch_seconds"] = record["lr"], record["seconds"]
    return {name: float(value) for name, value in metrics.items()}


class TrackerSet:
    """The fit's trackers, called as one; a best-effort tracker that raises is dropped with a warning."""

    def __init__(self, console: Console, trackers: list[tuple[str, Tracker, bool]] | None = None) -> None:
        self.console, self.trackers = console, list(trackers or [])

    def on_epoch(self, record: dict[str, Any]) -> None:
        self._each("on_epoch", record)

    def close(self) -> None:
        self._each("close")
        self.trackers = []

    def _each(self, method: str, *args: Any) -> None:
        for entry in list(self.trackers):
            name, tracker, best_effort = entry
            try:
                getattr(tracker, method)(*args)
            except Exception as err:  # noqa: BLE001 - tracking never fails a training (history.csv aside)
                if not best_effort:
                    raise
                warn(self.console, name, err)
                self.trackers.remove(entry)


def warn(console: Console, name: str, err: BaseException) -> None:
    # escape: a server's message may hold [brackets] that rich would take for markup
    first_line = escape((str(err).strip().splitlines() or [""])[0][:200])
    console.print(
        f"[yellow]warning: {name} tracking stopped ({type(err).__name__}: {first_line}); training goes on[/]"
    )


def open_trackers(
    spec: TrackingSpec | None,
    *,
    seed: int,
    epochs: int,
    history: list[dict[str, Any]],
    checkpoint_path: Path,
    rank: int,
    console: Console,
) -> TrackerSet:
    """The trackers of one fit, reconciled with ``history`` (the checkpoint's; empty for a fresh fit).

    Every rank checks the libraries (so all of them stop alike); rank 0 alone opens trackers.
    """
    if spec is None:
        return TrackerSet(console)
    names = list(dict.fromkeys(spec.trackers))
    check_trackers_available(names)
    if rank != 0:
        return TrackerSet(console)
    trackers: list[tuple[str, Tracker, bool]] = [("csv", CsvHistory(spec.history_csv, seed, history), False)]
    if "tensorboard" in names:
        log_dir = spec.log_dir / f"seed{seed}"
        _open_best_effort(trackers, "tensorboard", console, lambda: TensorBoardTracker(log_dir, history))
    if "mlflow" in names:
        from cidpipe.training.tracking_mlflow import MlflowTracker

        run_id_file = checkpoint_path.with_name(f"{checkpoint_path.stem}.mlflow-run")
        tags = {**spec.tags, "seed": str(seed)}
        _open_best_effort(
            trackers, "mlflow", console, lambda: MlflowTracker(tags, epochs, history, run_id_file)
        )
    return TrackerSet(console, trackers)


def _open_best_effort(trackers: list, name: str, console: Console, make) -> None:
    try:
        trackers.append((name, make(), True))
    except Exception as err:  # noqa: BLE001 - an unreachable tracking server must not stop the training
        warn(console, name, err)


# ---- csv ---------------------------------------------------------------------------------------------------

_HEAD, _TAIL = ["seed", "epoch", "train_loss"], ["train_top1", "val_top1", "lr", "seconds"]


def csv_row(seed: int, record: dict[str, Any]) -> dict[str, str]:
    """One history.csv row; floats as repr (they read back exactly), no value as an empty cell."""
    values: dict[str, Any] = {"seed": seed, "epoch": record["epoch"], "train_loss": record["train_loss"]}
    values.update({f"loss_{name}": value for name, value in (record.get("parts") or {}).items()})
    values.update({key: record.get(key) for key in _TAIL})
    return {key: "" if value is None else repr(value) for key, value in values.items()}


class CsvHistory:
    """history.csv: one row per epoch of every seed, rewritten whole (atomically) after each epoch.

    Rewritten rather than appended: a resumed fit's rows come from its checkpoint, so an epoch trained
    again after a kill can never appear twice. The rows of the other seeds (one stage fits each seed in
    turn, each with its own checkpoint) are kept as they are in the file.
    """

    def __init__(self, path: Path, seed: int, history: list[dict[str, Any]]) -> None:
        self.path, self.seed = Path(path), seed
        self.others = [row for row in read_history_csv(self.path) if row.get("seed") != str(seed)]
        self.rows = [csv_row(seed, record) for record in history]
        self._write()

    def on_epoch(self, record: dict[str, Any]) -> None:
        self.rows.append(csv_row(self.seed, record))
        self._write()

    def close(self) -> None:
        """Nothing to flush: the file is complete after every epoch."""

    def _write(self) -> None:
        rows = sorted(self.others + self.rows, key=_row_order)
        parts = dict.fromkeys(key for row in rows for key in row if key.startswith("loss_"))
        out = io.StringIO()
        # extrasaction ignore: a column someone added by hand to another seed's rows must not fail the fit
        writer = csv.DictWriter(
            out, fieldnames=[*_HEAD, *parts, *_TAIL], restval="", extrasaction="ignore", lineterminator="\n"
        )
        writer.writeheader()
        writer.writerows(rows)
        try:
            atomic_write_text(self.path, out.getvalue())
        except OSError as err:
            raise UsageError(f"cannot write {self.path}: {err.strerror or err}; check that disk") from None


def _row_order(row: dict[str, str]) -> tuple[int, int]:
    try:
        return int(row.get("seed", 0)), int(row.get("epoch", 0))
    except ValueError:  # a hand-edited row sorts first rather than failing the training
        return -1, -1


def read_history_csv(path: Path) -> list[dict[str, str]]:
    """history.csv's rows as strings ([] when there is none)."""
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            return [dict(row) for row in csv.DictReader(handle)]
    except FileNotFoundError:
        return []


# ---- tensorboard -------------------------------------------------------------------------------------------


class TensorBoardTracker:
    """Scalars through ``torch.utils.tensorboard.SummaryWriter``, step = the 0-based epoch (as in history)."""

    def __init__(self, log_dir: Path, history: list[dict[str, Any]]) -> None:
        from torch.utils.tensorboard import SummaryWriter

        log_dir.mkdir(parents=True, exist_ok=True)
        # An earlier process of this fit (killed, or trained before a --no-resume restart) wrote here: its
        # files go and the checkpoint's history is replayed. TensorBoard's own restart handling (purge_step)
        # only hides the stale events from readers that implement it.
        for stale in log_dir.glob("events.out.tfevents.*"):
            stale.unlink()
        self.writer = SummaryWriter(log_dir=str(log_dir))
        for record in history:
            self.on_epoch(record)
        self.writer.flush()

    def on_epoch(self, record: dict[str, Any]) -> None:
        wall_time = time.time()
        for name, value in epoch_metrics(record).items():
            self.writer.add_scalar(name, value, global_step=record["epoch"], walltime=wall_time)
        self.writer.flush()  # an epoch is minutes of work: readers see it now, not at the next 2-min flush

    def close(self) -> None:
        self.writer.close()

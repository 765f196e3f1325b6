"""The MLflow tracker (``report.trackers: [mlflow]``, from the ``tracking`` extra); see tracking.py.

Through ``MlflowClient`` (``log_batch`` is what ``mlflow.log_metrics`` sends) rather than the fluent API:
the fluent active run and tracking URI are process-wide, and a fit must not change them for a notebook
that uses MLflow itself. Best-effort: whatever raises here is one warning line (tracking.TrackerSet).
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Any

from cidpipe.atomic import atomic_write_text
from cidpipe.training.tracking import epoch_metrics

# The metric whose logged steps say which epochs a continued MLflow run already holds.
_STEP_METRIC = "loss/total"
# An unreachable server should cost seconds before its one warning, not MLflow's default 7 retries with
# exponential backoff and a 120 s timeout each (minutes of a stalled training).
_HTTP_BOUNDS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}


@contextlib.contextmanager
def _bounded_http():
    """_HTTP_BOUNDS while this tracker talks to MLflow, where the user set none; the environment is then
    restored, so MLflow used by the caller elsewhere keeps its own settings."""
    added = {name: value for name, value in _HTTP_BOUNDS.items() if name not in os.environ}
    os.environ.update(added)
    try:
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)


def tracking_uri() -> str:
    """MLFLOW_TRACKING_URI (or mlflow.set_tracking_uri's), else MLflow's own local default in the working
    directory: ./mlruns on MLflow 2; ./mlflow.db (sqlite) on MLflow 3, which refuses to create a new ./mlruns
    file store unless MLFLOW_ALLOW_FILE_STORE=true, so forcing ./mlruns would only fail there."""
    import mlflow

    return mlflow.get_tracking_uri()


class MlflowTracker:
    """One MLflow run per fit (stage and seed), in the experiment named after the recipe's run.

    ``run_id_file`` sits beside the fit's checkpoint (the pipeline keeps it with the checkpoint): a resumed
    fit continues that run and logs only the epochs of ``history`` it lacks, so none is logged twice.
    """

    def __init__(
        self, tags: dict[str, str], epochs: int, history: list[dict[str, Any]], run_id_file: Path
    ) -> None:
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri=tracking_uri())
        self.epochs, self.last_epoch = epochs, -1
        with _bounded_http():
            self.run_id, logged = self._continue(run_id_file, len(history))
            if self.run_id is None:
                self.run_id, logged = self._start(tags, run_id_file), set()
        for record in history:
            if record["epoch"] not in logged:
                self.on_epoch(record)
            self.last_epoch = record["epoch"]

    def _continue(self, run_id_file: Path, kept_epochs: int) -> tuple[str | None, set[int]]:
        """The earlier run of this fit and its logged epochs, when they are all epochs the checkpoint kept.

        Not so after ``--no-resume`` (the history starts over): that run is left and a new one started.
        """
        if not run_id_file.is_file():
            return None, set()
        run_id = run_id_file.read_text(encoding="utf-8").strip()
        try:
            self.client.get_run(run_id)
        except Exception:  # noqa: BLE001 - a run deleted (or a store moved) since: start a new one
            return None, set()
        logged = {metric.step for metric in self.client.get_metric_history(run_id, _STEP_METRIC)}
        if any(step >= kept_epochs for step in logged):
            return None, set()
        self.client.update_run(run_id, status="RUNNING")
        return run_id, logged

    def _start(self, tags: dict[str, str], run_id_file: Path) -> str:
        name = tags.get("run") or "cidpipe"
        experiment = self.client.get_experiment_by_name(name)
        experiment_id = experiment.experiment_id if experiment else self.client.create_experiment(name)
        run_name = f"{tags.get('stage', 'fit')} seed{tags.get('seed', '0')}"
        run = self.client.create_run(experiment_id, tags=dict(tags), run_name=run_name)
        atomic_write_text(run_id_file, run.info.run_id)
        return run.info.run_id

    def on_epoch(self, record: dict[str, Any]) -> None:
        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        metrics = [
            Metric(name, value, stamp, record["epoch"]) for name, value in epoch_metrics(record).items()
        ]
        with _bounded_http():
            self.client.log_batch(self.run_id, metrics=metrics)
        self.last_epoch = record["epoch"]

    def close(self) -> None:
        # KILLED, not FAILED: the fit stopped early (Ctrl-C, NaN, a crash) and a rerun continues this run.
        done = self.last_epoch >= self.epochs - 1
        with _bounded_http():
            self.client.set_terminated(self.run_id, status="FINISHED" if done else "KILLED")

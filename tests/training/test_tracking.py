"""Tracking a fit: history.csv, TensorBoard event files read back with TensorBoard's own reader, and a real
MLflow file store (skipped without mlflow). A fit killed right after a checkpoint (before its trackers saw
that epoch) and resumed tracks every epoch exactly once, and tracking never changes what is trained."""

from __future__ import annotations

import io
import math
import os

import pytest
import torch
from rich.console import Console

import cidpipe.training.loop as loop
from cidpipe.config import validate_recipe
from cidpipe.data.registry import load_dataset
from cidpipe.debris import prune_partial
from cidpipe.distill.registry import build_distiller
from cidpipe.errors import MissingDependency
from cidpipe.models import build_model
from cidpipe.training.checkpoint import load_checkpoint
from cidpipe.training.loop import RunSettings, fit
from cidpipe.training.tracking import (
    CsvHistory,
    TrackingSpec,
    check_trackers_available,
    epoch_metrics,
    open_trackers,
    read_history_csv,
)
from tests.conftest import tiny_recipe_dict

EPOCHS, SEED = 3, 3


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    recipe = validate_recipe(
        tiny_recipe_dict(
            tmp_path_factory.mktemp("runs"),
            # 256 images at 8 px: a CID epoch is a fraction of a second, and CID has several loss parts.
            data={"input_size": 8, "limit_train": 256},
            student={"train": {"epochs": EPOCHS}},
        )
    )
    bundle = load_dataset(recipe.data)
    torch.manual_seed(0)
    teacher = build_model("tinycnn", bundle.num_classes, in_channels=3).eval()
    return recipe, bundle, teacher


def _distiller(recipe, bundle, teacher):
    torch.manual_seed(1)
    student = build_model("tinycnn", bundle.num_classes, in_channels=3)
    return build_distiller(
        "cid", student, teacher, recipe.distill, num_classes=bundle.num_classes, epochs=EPOCHS
    )


def _settings(work, trackers=None):
    tracking = None
    if trackers is not None:
        tracking = TrackingSpec(
            history_csv=work / "history.csv",
            log_dir=work.parent / "tracking" / "student",
            trackers=tuple(trackers),
            tags={"run": "tiny", "stage": "student"},
        )
    return RunSettings(
        device="cpu",
        seed=SEED,
        batch_size=64,
        eval_batch_size=256,
        base_lr=0.01,
        checkpoint_path=work / "checkpoints" / f"seed{SEED}.pt",
        label="test",
        tracking=tracking,
    )


def _fit(setup, settings, console=None):
    recipe, bundle, teacher = setup
    model = _distiller(recipe, bundle, teacher)
    return model, fit(
        model, bundle, recipe.student.train, settings, console=console or Console(file=io.StringIO())
    )


def _killed_after_checkpoint_then_resumed(setup, work, trackers, monkeypatch, console=None):
    """Kill the fit between epoch 1's checkpoint and its trackers (the window a kill -9 can hit), prune the
    work directory as the pipeline does after a failure, then resume: (model, result)."""
    real_save = loop.save_fit_checkpoint

    def save_then_die(path, state, *args):
        real_save(path, state, *args)
        if state.next_epoch == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(loop, "save_fit_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        _fit(setup, _settings(work, trackers), console)
    monkeypatch.setattr(loop, "save_fit_checkpoint", real_save)
    assert prune_partial(work) and not (work / "history.csv").exists()  # only the checkpoint survives
    return _fit(setup, _settings(work, trackers), console)


def test_killed_and_resumed_fit_tracks_each_epoch_once_and_trains_the_same(setup, tmp_path, monkeypatch):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    plain, _ = _fit(setup, _settings(tmp_path / "plain"))
    work = tmp_path / ".student.partial-x"
    tracked, result = _killed_after_checkpoint_then_resumed(setup, work, ["tensorboard", "csv"], monkeypatch)
    assert result.resumed_from_epoch == 2

    for key, value in plain.state_dict().items():  # tracking never changes what is trained
        assert torch.equal(value, tracked.state_dict()[key]), key

    rows = read_history_csv(work / "history.csv")
    assert [(row["seed"], row["epoch"]) for row in rows] == [(str(SEED), str(e)) for e in range(EPOCHS)]
    # CID's parts vary by epoch (no ce during its warm-up): one column per part seen, empty where absent.
    parts = list(dict.fromkeys(p for record in result.history for p in record["parts"]))
    assert len(parts) > 1 and list(rows[0])[3 : 3 + len(parts)] == [f"loss_{p}" for p in parts]
    for row, record in zip(rows, result.history, strict=True):  # the checkpoint's values, exactly
        assert float(row["train_loss"]) == record["train_loss"] and float(row["lr"]) == record["lr"]
        assert float(row["val_top1"]) == record["val_top1"] and float(row["seconds"]) == record["seconds"]
        assert [float(row[f"loss_{p}"]) if row[f"loss_{p}"] else None for p in parts] == [
            record["parts"].get(p) for p in parts
        ]

    events = EventAccumulator(str(tmp_path / "tracking" / "student" / f"seed{SEED}"))
    events.Reload()
    expected = {}  # tag -> {epoch: value}, from the checkpoint's history
    for record in result.history:
        for tag, value in epoch_metrics(record).items():
            expected.setdefault(tag, {})[record["epoch"]] = value
    assert set(events.Tags()["scalars"]) == set(expected) and "loss/ce" in expected
    for tag, values in expected.items():
        scalars = events.Scalars(tag)
        assert [s.step for s in scalars] == list(values), tag  # each epoch once, in order
        assert [s.value for s in scalars] == pytest.approx(list(values.values()), rel=1e-6), tag  # float32


def test_history_csv_keeps_every_seed_and_rewrites_only_its_own(tmp_path):
    path = tmp_path / "history.csv"
    record = {
        "epoch": 0,
        "lr": 0.1,
        "train_loss": 1 / 3,
        "train_top1": 50.0,
        "val_top1": None,
        "seconds": 0.5,
        "parts": {"ce": 1 / 3},
    }
    CsvHistory(path, 0, [record, {**record, "epoch": 1}])
    CsvHistory(path, 1, [record])
    CsvHistory(path, 0, [record]).on_epoch({**record, "epoch": 1, "train_loss": 0.25})  # seed 0 again
    rows = read_history_csv(path)
    assert [(r["seed"], r["epoch"]) for r in rows] == [("0", "0"), ("0", "1"), ("1", "0")]
    assert float(rows[0]["train_loss"]) == 1 / 3 and rows[1]["train_loss"] == "0.25"
    assert rows[0]["val_top1"] == "" and not path.with_name(".history.csv.tmp").exists()


def test_trackers_are_opened_on_rank_zero_only(tmp_path):
    spec = TrackingSpec(
        history_csv=tmp_path / "history.csv", log_dir=tmp_path / "tb", trackers=("tensorboard",)
    )
    trackers = open_trackers(
        spec,
        seed=0,
        epochs=1,
        history=[],
        checkpoint_path=tmp_path / "c.pt",
        rank=1,
        console=Console(file=io.StringIO()),
    )
    trackers.on_epoch({"epoch": 0})
    trackers.close()
    assert not list(tmp_path.iterdir())


def test_trackers_stay_out_of_the_recipe_dump_at_their_default(tmp_path):
    plain = validate_recipe(tiny_recipe_dict(tmp_path))
    assert "trackers" not in plain.canonical()["report"]
    tracked = validate_recipe(tiny_recipe_dict(tmp_path, report={"trackers": ["tensorboard", "mlflow"]}))
    assert tracked.canonical()["report"]["trackers"] == ["tensorboard", "mlflow"]
    assert (
        validate_recipe(tiny_recipe_dict(tmp_path, report={"trackers": []})).recipe_id() == plain.recipe_id()
    )


def test_a_tracker_without_its_library_is_a_one_line_error():
    try:
        import mlflow  # noqa: F401
    except ImportError:
        with pytest.raises(
            MissingDependency, match=r"^report\.trackers lists mlflow .*cidpipe\[tracking\]'$"
        ):
            check_trackers_available(["csv", "mlflow"])
    else:
        pytest.skip("mlflow is installed here, so its absence cannot be shown")


def test_mlflow_run_is_continued_after_a_kill_with_each_epoch_once(setup, tmp_path, monkeypatch):
    pytest.importorskip("mlflow", reason="mlflow is not installed (pip install 'cidpipe[tracking]')")
    from mlflow.tracking import MlflowClient

    uri = (tmp_path / "mlruns").as_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    # A file store: MLflow 3 creates one only when allowed (its sqlite default takes ~20 s to set up).
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    work = tmp_path / ".student.partial-x"
    _, result = _killed_after_checkpoint_then_resumed(setup, work, ["mlflow"], monkeypatch)
    client = MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([client.get_experiment_by_name("tiny").experiment_id])
    assert run.info.status == "FINISHED"
    assert {k: run.data.tags[k] for k in ("run", "stage", "seed")} == {
        "run": "tiny",
        "stage": "student",
        "seed": str(SEED),
    }
    for key in epoch_metrics(result.history[-1]):  # the last epoch has every part
        steps = [m.step for m in client.get_metric_history(run.info.run_id, key)]
        expected = [r["epoch"] for r in result.history if key in epoch_metrics(r)]
        assert sorted(steps) == expected, key
    losses = sorted(client.get_metric_history(run.info.run_id, "loss/total"), key=lambda m: m.step)
    assert [m.value for m in losses] == [r["train_loss"] for r in result.history]


def test_an_unreachable_mlflow_server_is_one_warning_and_training_goes_on(setup, tmp_path, monkeypatch):
    pytest.importorskip("mlflow", reason="mlflow is not installed (pip install 'cidpipe[tracking]')")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")  # the discard port: refused at once
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_TIMEOUT", raising=False)
    out = io.StringIO()
    _, result = _fit(setup, _settings(tmp_path / "work", ["mlflow"]), Console(file=out, width=300))
    warnings = [line for line in out.getvalue().splitlines() if "mlflow tracking stopped" in line]
    assert len(warnings) == 1 and "Traceback" not in out.getvalue(), out.getvalue()
    assert "MLFLOW_HTTP_REQUEST_TIMEOUT" not in os.environ  # its bound held only while it talked to MLflow
    assert len(read_history_csv(tmp_path / "work" / "history.csv")) == EPOCHS
    assert all(math.isfinite(r["train_loss"]) for r in result.history)


class _CheckpointAtEachEpochLine(io.StringIO):
    """A log that reads the checkpoint on disk (what a resume keeps) whenever an epoch line is written."""

    def __init__(self, checkpoint):
        super().__init__()
        self.checkpoint, self.kept_at_line = checkpoint, []

    def write(self, text):
        if " epoch " in text and "/3:" in text:
            kept = load_checkpoint(self.checkpoint)["epoch"] if self.checkpoint.is_file() else 0
            self.kept_at_line.append(kept)
        return super().write(text)


def test_an_epoch_line_is_printed_only_once_its_checkpoint_is_kept(setup, tmp_path):
    """A kill right after the line would otherwise train that epoch again on resume (it used to be printed
    before the checkpoint was written)."""
    settings = _settings(tmp_path / "work")
    log = _CheckpointAtEachEpochLine(settings.checkpoint_path)
    _fit(setup, settings, console=Console(file=log, width=200))
    assert log.kept_at_line == [1, 2, 3], log.getvalue()

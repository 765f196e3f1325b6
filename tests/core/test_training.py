"""The training loop: exact resume (CID dictionary included), NaN guard, validation-only model selection."""

from __future__ import annotations

import pytest
import torch

from cidpipe.config import validate_recipe
from cidpipe.data.registry import load_dataset
from cidpipe.distill.registry import build_distiller
from cidpipe.errors import TrainingDiverged
from cidpipe.models import build_model
from cidpipe.training.loop import RunSettings, fit
from cidpipe.training.schedule import learning_rate, scaled_milestones
from tests.conftest import tiny_recipe_dict


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    recipe = validate_recipe(
        tiny_recipe_dict(
            tmp_path_factory.mktemp("runs"),
            student={"train": {"epochs": 3}},
            distill={"cid": {"warmup_epochs": 1}},
        )
    )
    bundle = load_dataset(recipe.data)
    torch.manual_seed(0)
    teacher = build_model("tinycnn", bundle.num_classes, in_channels=3).eval()
    return recipe, bundle, teacher


def _distiller(recipe, bundle, teacher, method="cid"):
    torch.manual_seed(1)
    student = build_model("tinycnn", bundle.num_classes, in_channels=3)
    return build_distiller(
        method,
        student,
        teacher,
        recipe.distill,
        num_classes=bundle.num_classes,
        epochs=recipe.student.train.epochs,
    )


def _settings(path, resume=True):
    return RunSettings(
        device="cpu",
        seed=3,
        batch_size=64,
        eval_batch_size=256,
        base_lr=0.01,
        checkpoint_path=path,
        resume=resume,
        label="test",
    )


def test_resume_after_interrupt_is_exact(setup, tmp_path):
    recipe, bundle, teacher = setup
    straight = _distiller(recipe, bundle, teacher)
    fit(straight, bundle, recipe.student.train, _settings(tmp_path / "a.pt"))

    interrupted = _distiller(recipe, bundle, teacher)
    original_start = interrupted.on_epoch_start

    def stop_at_epoch_2(epoch):
        if epoch == 2:
            raise KeyboardInterrupt
        original_start(epoch)

    interrupted.on_epoch_start = stop_at_epoch_2
    with pytest.raises(KeyboardInterrupt):
        fit(interrupted, bundle, recipe.student.train, _settings(tmp_path / "b.pt"))
    resumed = _distiller(recipe, bundle, teacher)
    result = fit(resumed, bundle, recipe.student.train, _settings(tmp_path / "b.pt"))
    assert result.resumed_from_epoch == 2
    expected, actual = straight.state_dict(), resumed.state_dict()
    assert expected.keys() == actual.keys()
    for key in expected:
        assert torch.equal(expected[key], actual[key]), key
    assert any("dictionary" in key for key in expected), "CID's dictionary must be part of the state"


def test_nan_loss_stops_loudly_and_keeps_last_good_checkpoint(setup, tmp_path):
    recipe, bundle, teacher = setup
    distiller = _distiller(recipe, bundle, teacher, method="kd")
    original_forward = distiller.forward
    state = {"epoch": 0}
    original_start = distiller.on_epoch_start

    def track(epoch):
        state["epoch"] = epoch
        original_start(epoch)

    def poisoned(x, y):
        out = original_forward(x, y)
        if state["epoch"] == 1:
            out.loss = out.loss * float("nan")
        return out

    distiller.on_epoch_start = track
    distiller.forward = poisoned
    path = tmp_path / "c.pt"
    with pytest.raises(TrainingDiverged, match="epoch 2.*last good checkpoint is kept"):
        fit(distiller, bundle, recipe.student.train, _settings(path))
    kept = torch.load(path, weights_only=True)
    assert kept["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in kept["distiller"].values() if v.is_floating_point())


def test_model_selection_uses_validation_only(setup, tmp_path):
    recipe, bundle, teacher = setup
    result = fit(
        _distiller(recipe, bundle, teacher, "kd"), bundle, recipe.student.train, _settings(tmp_path / "d.pt")
    )
    best = max(result.history, key=lambda r: r["val_top1"])
    assert result.best_epoch == best["epoch"]
    assert result.best_val_top1 == best["val_top1"]
    assert {"train_loss", "train_top1", "val_top1", "lr", "parts"} <= set(result.history[0])


def test_paper_schedule_scales_with_epochs():
    recipe = validate_recipe({"name": "r", "teacher": {"model": {"arch": "resnet8"}}})
    cfg = recipe.teacher.train
    assert scaled_milestones(cfg) == [150, 180, 210]
    assert learning_rate(cfg, 0.05, 149) == pytest.approx(0.05)
    assert learning_rate(cfg, 0.05, 150) == pytest.approx(0.005)
    assert learning_rate(cfg, 0.05, 239) == pytest.approx(0.05e-3)
    short = cfg.model_copy(update={"epochs": 24})
    assert scaled_milestones(short) == [15, 18, 21]

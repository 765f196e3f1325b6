"""The training loop: exact resume (CID dictionary included), NaN guard, validation-only model selection,
the paper protocol (no validation split, the last epoch kept)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from cidpipe.config import load_recipe, validate_recipe
from cidpipe.data.config import DataConfig
from cidpipe.data.registry import load_dataset
from cidpipe.data.splitting import stratified_split
from cidpipe.distill.registry import build_distiller
from cidpipe.errors import ConfigError, TrainingDiverged
from cidpipe.models import build_model
from cidpipe.train_config import OptimConfig, check_model_selection
from cidpipe.training.loop import RunSettings, fit
from cidpipe.training.schedule import learning_rate, scaled_milestones
from tests.conftest import tiny_recipe_dict

RECIPES = Path(__file__).resolve().parents[2] / "recipes"


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


def _interrupt_at_epoch_2_then_resume(recipe, bundle, teacher, checkpoint):
    """Fit until a Ctrl-C at the start of epoch 2, then resume from the checkpoint: (model, result)."""
    interrupted = _distiller(recipe, bundle, teacher)
    original_start = interrupted.on_epoch_start

    def stop_at_epoch_2(epoch):
        if epoch == 2:
            raise KeyboardInterrupt
        original_start(epoch)

    interrupted.on_epoch_start = stop_at_epoch_2
    with pytest.raises(KeyboardInterrupt):
        fit(interrupted, bundle, recipe.student.train, _settings(checkpoint))
    resumed = _distiller(recipe, bundle, teacher)
    return resumed, fit(resumed, bundle, recipe.student.train, _settings(checkpoint))


def test_resume_after_interrupt_is_exact(setup, tmp_path):
    recipe, bundle, teacher = setup
    straight = _distiller(recipe, bundle, teacher)
    fit(straight, bundle, recipe.student.train, _settings(tmp_path / "a.pt"))

    resumed, result = _interrupt_at_epoch_2_then_resume(recipe, bundle, teacher, tmp_path / "b.pt")
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


# ----------------------------------------------------------------- model selection and the paper protocol
def _without_seconds(history):
    return [{k: v for k, v in record.items() if k != "seconds"} for record in history]


def _cfg(recipe, select):
    return recipe.student.train.model_copy(update={"select": select})


class _UntouchableSplit:
    """A test split that fails the run if anything reads it: selection must never look at test data."""

    def __len__(self):
        return 100

    def __getattr__(self, name):
        raise AssertionError(f"the training loop touched the test split ({name})")


@pytest.fixture(scope="module")
def paper_setup(tmp_path_factory):
    """The tiny recipe under the paper protocol: no validation split, the last epoch is kept."""
    recipe = validate_recipe(
        tiny_recipe_dict(
            tmp_path_factory.mktemp("paper"),
            data={"val_fraction": 0},
            student={"train": {"epochs": 3, "select": "last"}},
            teacher={"train": {"epochs": 2, "select": "last"}},
            distill={"cid": {"warmup_epochs": 1}},
        )
    )
    bundle = load_dataset(recipe.data)
    torch.manual_seed(0)
    teacher = build_model("tinycnn", bundle.num_classes, in_channels=3).eval()
    return recipe, bundle, teacher


def test_select_last_keeps_the_last_epoch_and_trains_exactly_like_best_val(setup, tmp_path):
    recipe, bundle, teacher = setup
    best = fit(_distiller(recipe, bundle, teacher, "kd"), bundle, _cfg(recipe, "best_val"),
               _settings(tmp_path / "best.pt"))
    distiller = _distiller(recipe, bundle, teacher, "kd")
    last = fit(distiller, bundle, _cfg(recipe, "last"), _settings(tmp_path / "last.pt"))
    assert _without_seconds(last.history) == _without_seconds(best.history)  # selection never steers training
    assert last.best_epoch == recipe.student.train.epochs - 1
    assert last.best_val_top1 == last.history[-1]["val_top1"]
    final = distiller.state_dict()
    assert all(torch.equal(last.best_state[key], final[key]) for key in final)
    # The last epoch's model is the distiller itself: the checkpoint does not store it a second time.
    assert torch.load(tmp_path / "last.pt", weights_only=True)["best_state"] is None


def test_paper_protocol_trains_on_the_whole_training_set_and_keeps_the_last_epoch(paper_setup, tmp_path):
    recipe, bundle, teacher = paper_setup
    with_val = load_dataset(recipe.data.model_copy(update={"val_fraction": 0.1}))
    assert len(bundle.val) == 0 and len(bundle.train) == len(with_val.train) + len(with_val.val)
    assert bundle.val.describe()["size"] == 0
    assert list(bundle.val.batches(8, shuffle=False, augment=False)) == []
    distiller = _distiller(recipe, bundle, teacher)
    result = fit(distiller, bundle, recipe.student.train, _settings(tmp_path / "p.pt"))
    assert result.best_epoch == recipe.student.train.epochs - 1 and result.best_val_top1 is None
    assert [record["val_top1"] for record in result.history] == [None] * recipe.student.train.epochs
    final = distiller.state_dict()
    assert all(torch.equal(result.best_state[key], final[key]) for key in final)


@pytest.mark.parametrize("select", ["best_val", "last"])
def test_model_selection_never_reads_the_test_split(setup, tmp_path, select):
    recipe, bundle, teacher = setup
    guarded = dataclasses.replace(bundle, test=_UntouchableSplit())
    result = fit(_distiller(recipe, bundle, teacher, "kd"), guarded, _cfg(recipe, select),
                 _settings(tmp_path / f"{select}.pt"))
    assert result.best_epoch >= 0


def test_best_val_without_a_validation_split_is_a_one_line_config_error(paper_setup, tmp_path):
    recipe, bundle, teacher = paper_setup
    path = tmp_path / "never.pt"
    with pytest.raises(ConfigError) as raised:
        fit(_distiller(recipe, bundle, teacher, "kd"), bundle, _cfg(recipe, "best_val"), _settings(path))
    message = str(raised.value)
    assert raised.value.exit_code == 2 and "\n" not in message
    assert "select" in message and "val_fraction" in message
    assert not path.exists(), "refused before any epoch ran"
    with pytest.raises(ConfigError, match=r"^student\.train\.select is best_val .*data\.val_fraction is 0"):
        check_model_selection(_cfg(recipe, "best_val"), 0.0, "student")
    check_model_selection(_cfg(recipe, "last"), 0.0, "student")
    check_model_selection(_cfg(recipe, "best_val"), 0.1, "student")


def test_resume_under_the_paper_protocol_is_exact(paper_setup, tmp_path):
    recipe, bundle, teacher = paper_setup
    straight = _distiller(recipe, bundle, teacher)
    expected = fit(straight, bundle, recipe.student.train, _settings(tmp_path / "a.pt"))
    resumed, result = _interrupt_at_epoch_2_then_resume(recipe, bundle, teacher, tmp_path / "b.pt")
    assert result.resumed_from_epoch == 2 and result.best_epoch == expected.best_epoch
    assert _without_seconds(result.history) == _without_seconds(expected.history)
    for key, value in straight.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key
        assert torch.equal(expected.best_state[key], result.best_state[key]), key


def test_zero_validation_fraction_holds_nothing_out():
    labels = np.repeat(np.arange(5), 7)
    keep, held = stratified_split(labels, 0.0, seed=4)
    assert len(held) == 0 and sorted(keep.tolist()) == list(range(len(labels)))
    again, _ = stratified_split(labels, 0.0, seed=4)
    assert keep.tolist() == again.tolist() and keep.tolist() != sorted(keep.tolist())  # seeded order
    _, held_some = stratified_split(labels, 0.1, seed=4)
    assert len(held_some) == 5  # > 0 still holds out at least one sample per class


def test_an_image_folder_without_a_validation_split_has_an_empty_val(tmp_path):
    from PIL import Image

    for name in ("cat", "dog"):
        (tmp_path / name).mkdir()
        for i in range(5):
            Image.fromarray(np.full((6, 6, 3), 40 * i, np.uint8)).save(tmp_path / name / f"{i}.png")
    bundle = load_dataset(DataConfig(name="imagefolder", root=tmp_path, val_fraction=0, input_size=8))
    assert len(bundle.val) == 0 and len(bundle.train) + len(bundle.test) == 10
    assert bundle.val.describe()["size"] == 0 and bundle.val.to_numpy()[0].shape == (0, 3, 8, 8)
    assert list(bundle.val.batches(4, shuffle=True, augment=True, generator=torch.Generator())) == []
    assert len(bundle.val.to_device("cpu")) == 0


def test_default_selection_stays_out_of_the_hashed_config():
    """Stage and recipe ids hash the dumped sections: the new key at its default must not change them."""
    assert "select" not in OptimConfig().model_dump(mode="json")
    assert OptimConfig(select="last").model_dump(mode="json")["select"] == "last"
    recipe = validate_recipe({"name": "r", "teacher": {"model": {"arch": "resnet8"}}})
    assert "select" not in recipe.canonical()["teacher"]["train"]


@pytest.mark.parametrize("path", sorted(RECIPES.glob("cifar100_*.yaml")), ids=lambda p: p.stem)
def test_the_cifar100_recipes_follow_the_paper_protocol(path):
    recipe = load_recipe(path)
    assert recipe.data.val_fraction == 0
    assert recipe.teacher.train.select == "last" and recipe.student.train.select == "last"
    for section in ("teacher", "student"):
        check_model_selection(getattr(recipe, section).train, recipe.data.val_fraction, section)

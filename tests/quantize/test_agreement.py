"""The quantize stage's top-1 agreement with FP32 on validation, and its warning when the bench's
``min_agreement`` floor would refuse an artifact that met the accuracy budget."""

from __future__ import annotations

import copy

import pytest
import torch
from rich.console import Console

from cidpipe.config import validate_recipe
from cidpipe.export.ort_run import make_session, run_onnx
from cidpipe.export.torch2onnx import export_onnx
from cidpipe.quantize.config import QuantizeConfig
from cidpipe.quantize.int8 import quantize_static_int8, top1_agreement
from cidpipe.stages.contract import StageOptions
from cidpipe.stages.quantize import _measured, _warn_below_bench_agreement
from tests.conftest import tiny_recipe_dict


def _predictions(path, x):
    return run_onnx(make_session(path), x).argmax(1)


def test_agreement_is_the_share_of_equal_predictions(fp32_onnx, trained_net, digits, tmp_path):
    x_train, _, x_val, _ = digits
    int8 = tmp_path / "int8.onnx"
    quantize_static_int8(fp32_onnx, int8, x_train[:64], QuantizeConfig())
    expected = float((_predictions(fp32_onnx, x_val) == _predictions(int8, x_val)).mean() * 100)
    assert top1_agreement(fp32_onnx, int8, x_val, "cpu") == pytest.approx(expected)
    assert top1_agreement(fp32_onnx, fp32_onnx, x_val, "trt") == 100.0

    # A model whose classifier is perturbed flips some predictions: the count is not stuck at 100.
    noisy = copy.deepcopy(trained_net)
    with torch.no_grad():
        generator = torch.Generator().manual_seed(0)
        weight = noisy.classifier.weight
        weight.add_(torch.randn(weight.shape, generator=generator) * weight.std() * 2)
    other = export_onnx(noisy, (1, 32, 32), tmp_path / "noisy.onnx")
    flipped = _predictions(fp32_onnx, x_val) != _predictions(other, x_val)
    assert 0 < flipped.sum() < len(x_val)
    assert top1_agreement(fp32_onnx, other, x_val, "cpu") == pytest.approx(100 * (1 - flipped.mean()))


def _warnings(tmp_path, agreement: float, **bench) -> str:
    recipe = validate_recipe(tiny_recipe_dict(tmp_path / "runs", bench={"enabled": True, **bench}))
    console = Console(record=True, width=300)
    _warn_below_bench_agreement(recipe, {"agreement": agreement}, "cpu", StageOptions(console=console))
    return console.export_text()


def test_warns_when_the_bench_floor_would_refuse_the_artifact(tmp_path):
    text = _warnings(tmp_path, 84.0, min_agreement=90)
    assert "84.0% of validation predictions, below bench.min_agreement 90%" in text
    assert "exported-but-failed" in text and "lower bench.min_agreement" in text
    assert _warnings(tmp_path, 95.0, min_agreement=90) == ""
    assert _warnings(tmp_path, 84.0, min_agreement=90, enabled=False) == ""  # no bench, nothing to refuse


def test_success_line_names_the_split_budget_and_agreement():
    info = {"top1_fp32": 91.0, "top1_int8": 90.6, "drop": 0.4, "nodes_in_float": ["a"], "agreement": 97.25}
    line = _measured(info, 0.5)
    assert line.startswith("validation top-1 91.00% -> 90.60% (drop 0.40 points of the 0.5-point budget")
    assert "1 nodes kept in float; top-1 agreement with FP32 97.2%" in line
    assert line.endswith("the gate and bench judge the test split")
    assert "budget" not in _measured(info, None)
    assert _measured({"top1_int8": None}, None) == "no validation split, drop measured by the bench"

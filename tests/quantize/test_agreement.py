"""The quantize stage's top-1 agreement with FP32 on validation, and its warning when the bench's
``min_agreement`` floor would refuse an artifact that met the accuracy budget."""

from __future__ import annotations

import copy

import pytest
import torch

from cidpipe.config import validate_recipe
from cidpipe.export.ort_run import make_session, run_onnx
from cidpipe.export.torch2onnx import export_onnx
from cidpipe.quantize.config import QuantizeConfig
from cidpipe.quantize.int8 import quantize_static_int8, top1_agreement
from cidpipe.quantize.summary import int8_warnings, success_line
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


def _files(tmp_path, fp32_bytes: int, int8_bytes: int):
    (tmp_path / "fp32.onnx").write_bytes(b"x" * fp32_bytes)
    (tmp_path / "int8.onnx").write_bytes(b"x" * int8_bytes)
    return tmp_path / "fp32.onnx", tmp_path / "int8.onnx"


def _warnings(tmp_path, info: dict, int8_share: float = 0.25, max_drop: float = 0.5, target: str = "cpu",
              **bench) -> list[str]:
    recipe = validate_recipe(tiny_recipe_dict(tmp_path / "runs", bench={"enabled": True, **bench},
                                              quantize={"enabled": True, "max_drop": max_drop}))
    fp32, int8 = _files(tmp_path, 4000, int(4000 * int8_share))
    return int8_warnings(recipe, {"val_images": 1000, **info}, target, fp32, int8)


def test_warns_when_the_bench_floor_would_refuse_the_artifact(tmp_path):
    (text,) = _warnings(tmp_path, {"agreement": 84.0}, min_agreement=90)
    assert "84.0% of validation predictions, below bench.min_agreement 90%" in text
    assert "exported-but-failed" in text and "lower bench.min_agreement" in text
    assert _warnings(tmp_path, {"agreement": 95.0}, min_agreement=90) == []
    assert _warnings(tmp_path, {"agreement": 84.0}, min_agreement=90, enabled=False) == []  # no bench
    # A QAT graph is a further-trained model: the bench reports its agreement and does not refuse it.
    assert _warnings(tmp_path, {"agreement": 84.0, "path": "qat"}, min_agreement=90) == []


def test_warns_when_the_budget_is_finer_than_one_validation_image(tmp_path):
    (text,) = _warnings(tmp_path, {"agreement": 100.0, "val_images": 32})
    assert text.startswith("with 32 validation images one image is 3.12 points, so the 0.5-point budget "
                           "allows not one more wrong prediction")
    assert _warnings(tmp_path, {"agreement": 100.0, "val_images": 400}) == []  # 0.25 points an image


def test_warns_when_int8_is_mostly_float(tmp_path):
    info = {"agreement": 100.0, "float_stem": ["conv0"], "nodes_in_float": ["a", "b", "c"]}
    (text,) = _warnings(tmp_path, info, int8_share=0.98)
    assert text == ("INT8 for cpu is 98% of the FP32 size (the stem convolution and 3 sensitive nodes kept "
                    "in float): expect little or no speed-up; the bench measures it")
    assert _warnings(tmp_path, info, int8_share=0.3) == []
    # A TensorRT QDQ graph keeps float weights behind Q/DQ pairs (TensorRT folds them): its file is larger
    # than FP32 with everything quantized, so its size says nothing and must not warn.
    assert _warnings(tmp_path, {**info, "float_stem": [], "nodes_in_float": []}, int8_share=1.06,
                     target="trt") == []


def test_success_line_names_the_split_budget_images_agreement_and_sizes(tmp_path):
    fp32, int8 = _files(tmp_path, 1_200_000, 330_000)
    info = {"top1_fp32": 91.0, "top1_int8": 90.6, "drop": 0.4, "nodes_in_float": ["a"], "agreement": 97.25,
            "val_images": 500, "float_stem": ["stem"]}
    line = success_line(info, 0.5, fp32, int8)
    assert line == ("validation top-1 91.00% -> 90.60% (drop 0.40 points of the 0.5-point budget, 500 "
                    "images), top-1 agreement with FP32 97.2%; in float: the stem convolution and 1 "
                    "sensitive node; 0.330 MB (FP32 1.20 MB); the gate and bench judge the test split")
    assert "budget" not in success_line(info, None, fp32, int8)
    all_int8 = {**info, "float_stem": [], "nodes_in_float": []}
    assert "in float: nothing" in success_line(all_int8, 0.5, fp32, int8)
    assert success_line({"top1_int8": None}, None, fp32, int8).startswith("no validation split")
    trt = success_line(all_int8, 0.5, fp32, int8, "trt")
    assert "0.330 MB (FP32 1.20 MB; weights stay float behind Q/DQ until TensorRT builds the engine)" in trt

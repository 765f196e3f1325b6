"""Accuracy budget: a model built so that plain INT8 collapses, then the greedy float fallback.

The outlier case: one conv channel is made dead (BN scale 0, bias -1, so ReLU outputs 0) and the classifier
weights reading it are set to 1e4. The FP32 function is unchanged, but per-tensor INT8 weights of the
classifier get a scale set by 1e4, so every real weight rounds to 0.
"""

from __future__ import annotations

import copy

import pytest
import torch

from cidpipe.errors import ParityError
from cidpipe.export.parity import check_parity
from cidpipe.export.torch2onnx import export_onnx
from cidpipe.quantize.budget import order_candidates
from cidpipe.quantize.config import QuantizeConfig
from cidpipe.quantize.int8 import quantize_static_int8


@pytest.fixture(scope="module")
def outlier_onnx(trained_net, digits, tmp_path_factory):
    model = copy.deepcopy(trained_net)
    conv_bn, channel = model.features[5], 3
    with torch.no_grad():
        conv_bn.weight[channel] = 0.0
        conv_bn.bias[channel] = -1.0
        model.classifier.weight[:, channel * 16 : (channel + 1) * 16] = 1e4
    path = export_onnx(model, (1, 32, 32), tmp_path_factory.mktemp("outlier") / "outlier.onnx")
    check_parity(model, path, digits[2], max_abs_diff=1e-3, min_agreement=100.0)  # 1e4 weights x exact 0
    return path


def test_fallback_keeps_sensitive_node_in_float_within_budget(outlier_onnx, digits, tmp_path):
    x_train, _, x_val, y_val = digits
    plain = quantize_static_int8(
        outlier_onnx,
        tmp_path / "plain.onnx",
        x_train[:128],
        QuantizeConfig(per_channel=False),
        val=(x_val, y_val),
    )
    assert plain["drop"] > 20.0, plain  # the deliberate collapse (measured: ~80 points)

    cfg = QuantizeConfig(per_channel=False, max_drop=0.1)
    result = quantize_static_int8(outlier_onnx, tmp_path / "fit.onnx", x_train[:128], cfg, val=(x_val, y_val))
    assert result["drop"] <= 0.1, result
    assert any("Gemm" in node for node in result["nodes_in_float"]), result["nodes_in_float"]
    gemm_probe = next(s for s in result["sensitivity"] if "Gemm" in s["node"])
    assert gemm_probe["top1_int8"] == max(s["top1_int8"] for s in result["sensitivity"])  # ranked first
    assert result["quantizations"] <= 1 + len(result["sensitivity"]) + cfg.max_float_nodes
    print(
        f"outlier model: plain INT8 drop {plain['drop']:.2f} -> {result['drop']:.2f} points with "
        f"{result['nodes_in_float']} in float, {result['quantizations']} quantizer passes"
    )


def test_budget_that_cannot_hold_raises_parity_error_with_numbers(outlier_onnx, digits, tmp_path):
    x_train, _, x_val, y_val = digits
    # One probe only, spent on a conv (the stem is already float, so 2 candidates remain), so the
    # classifier (the real culprit) stays INT8.
    cfg = QuantizeConfig(per_channel=False, max_drop=0.1, max_sensitivity_candidates=1, max_float_nodes=1)
    with pytest.raises(
        ParityError,
        match=r"INT8 drop \d+\.\d\d points > budget 0.1 even with 1 nodes in float "
        r"\(FP32 top-1 \d+\.\d\d%, INT8 \d+\.\d\d%, 1 of 2 nodes probed\)",
    ):
        quantize_static_int8(outlier_onnx, tmp_path / "q.onnx", x_train[:128], cfg, val=(x_val, y_val))
    assert not (tmp_path / "q.onnx").exists()


def test_no_float_nodes_allowed_keeps_every_node_int8_and_probes_nothing(outlier_onnx, digits, tmp_path):
    """quantize.max_float_nodes: 0 (all INT8, the fastest graph, or nothing): the miss is reported without
    a sensitivity search, and with on_budget_miss="return" (the QAT fallback) the plain graph is kept."""
    x_train, _, x_val, y_val = digits
    cfg = QuantizeConfig(per_channel=False, max_drop=0.1, max_float_nodes=0)
    with pytest.raises(ParityError, match=r"budget 0.1 with every node in INT8 "
                       r"\(quantize.max_float_nodes: 0\) \(FP32 top-1 \d+\.\d\d%, INT8 \d+\.\d\d%, "
                       r"0 of 2 nodes probed\)"):
        quantize_static_int8(outlier_onnx, tmp_path / "q.onnx", x_train[:128], cfg, val=(x_val, y_val))
    kept = quantize_static_int8(outlier_onnx, tmp_path / "k.onnx", x_train[:128], cfg, val=(x_val, y_val),
                                on_budget_miss="return")
    assert kept["nodes_in_float"] == [] and kept["sensitivity"] == [] and kept["drop"] > 20.0


def test_candidate_order_is_first_then_output_end():
    assert order_candidates(["c1", "c2", "c3", "fc"], 3) == ["c1", "fc", "c3"]
    assert order_candidates(["fc"], 5) == ["fc"]

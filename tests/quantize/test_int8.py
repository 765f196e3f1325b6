"""Static INT8 on a trained model: every calibration method, per-target types, measured top-1 drop."""

from __future__ import annotations

import hashlib

import numpy as np
import onnx
import pytest

from cidpipe.errors import UsageError
from cidpipe.export.parity import compare_onnx
from cidpipe.export.torch2onnx import read_onnx_metadata
from cidpipe.quantize.config import QuantizeConfig
from cidpipe.quantize.int8 import quantize_static_int8, softmax_branch_nodes


@pytest.mark.parametrize("method", ["minmax", "entropy", "percentile"])
def test_static_int8_each_calibration_method(fp32_onnx, digits, tmp_path, method):
    x_train, _, x_val, y_val = digits
    calib = x_train[:128]
    cfg = QuantizeConfig(calibration={"method": method})
    out = tmp_path / "student.int8.onnx"
    result = quantize_static_int8(fp32_onnx, out, calib, cfg, val=(x_val, y_val))

    proto = onnx.load(str(out))
    onnx.checker.check_model(proto)
    ops = {n.op_type for n in proto.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert result["calibration"] == {
        "method": method,
        "samples": 128,
        "sha256": hashlib.sha256(calib.astype(np.float32).tobytes()).hexdigest(),
    }
    assert (result["activation_type"], result["weight_type"], result["per_channel"]) == (
        "uint8",
        "int8",
        True,
    )
    assert result["top1_fp32"] > 90.0  # the model is really trained
    assert result["drop"] == pytest.approx(result["top1_fp32"] - result["top1_int8"])
    assert result["drop"] < 3.0, result  # measured: 0.0-0.3 points on this model
    again = compare_onnx(fp32_onnx, out, x_val, y_val)  # the artifact on disk is the one measured
    assert again["top1_cand"] == pytest.approx(result["top1_int8"])
    meta = read_onnx_metadata(out)
    assert meta["precision"] == "int8" and meta["input_shape"] == [1, 32, 32]


@pytest.mark.parametrize("float_stem", [None, False])
def test_cpu_target_keeps_the_stem_convolution_in_float(fp32_onnx, digits, tmp_path, float_stem):
    out = tmp_path / "stem.int8.onnx"
    result = quantize_static_int8(fp32_onnx, out, digits[0][:64], QuantizeConfig(float_stem=float_stem))
    graph = onnx.load(str(out)).graph
    producers = {o: n.op_type for n in graph.node for o in n.output}
    image = graph.input[0].name
    convs = [n for n in graph.node if n.op_type == "Conv"]
    stem = [n for n in convs if n.input[0] == image]
    if float_stem is None:  # the cpu default: the stem reads the float image with float weights
        assert len(stem) == 1 and result["float_stem"] == [stem[0].name], result["float_stem"]
        assert stem[0].input[1] not in producers, "the stem's weight should be a float initializer"
        assert stem[0].name in read_onnx_metadata(out)["quantization"]
    else:
        assert stem == [] and result["float_stem"] == []
    rest = [n for n in convs if n not in stem]
    assert rest and all(producers.get(n.input[0]) == "DequantizeLinear" for n in rest)  # the rest is INT8


def test_trt_target_is_symmetric_int8_with_qdq_weights(fp32_onnx, digits, tmp_path):
    out = tmp_path / "trt.int8.onnx"
    result = quantize_static_int8(fp32_onnx, out, digits[0][:64], QuantizeConfig(target="trt"))
    assert (result["activation_type"], result["weight_type"]) == ("int8", "int8")
    graph = onnx.load(str(out)).graph
    inits = {i.name: i for i in graph.initializer}
    zero_points = [
        onnx.numpy_helper.to_array(inits[n.input[2]])
        for n in graph.node
        if n.op_type == "QuantizeLinear" and len(n.input) > 2 and n.input[2] in inits
    ]
    assert zero_points and all(zp.dtype == np.int8 and not zp.any() for zp in zero_points)  # symmetric
    conv = next(n for n in graph.node if n.op_type == "Conv")
    producers = {o: n.op_type for n in graph.node for o in n.output}
    assert producers[conv.input[1]] == "DequantizeLinear"
    weight_dq = next(n for n in graph.node if conv.input[1] in n.output)
    assert producers.get(weight_dq.input[0]) == "QuantizeLinear"  # Q/DQ pair on the float weight


def test_cid_graph_quantizes_and_context_branch_measured(cid_onnx, digits, tmp_path):
    """Softmax + MatMul with the dictionary survive quantization; INT8 of the branch vs float, measured."""
    x_train, _, x_val, y_val = digits
    branch = softmax_branch_nodes(cid_onnx)
    assert {"Softmax", "MatMul"} <= {n.split("/")[-1].split("_")[0] for n in branch}
    full = quantize_static_int8(
        cid_onnx, tmp_path / "a.onnx", x_train[:128], QuantizeConfig(), val=(x_val, y_val)
    )
    kept = quantize_static_int8(
        cid_onnx,
        tmp_path / "b.onnx",
        x_train[:128],
        QuantizeConfig(),
        val=(x_val, y_val),
        nodes_to_exclude=branch,
    )
    ops = [n.op_type for n in onnx.load(str(tmp_path / "a.onnx")).graph.node]
    assert "Softmax" in ops and "MatMul" in ops
    assert kept["nodes_excluded"] == branch + kept["float_stem"] and len(kept["float_stem"]) == 1
    print(
        f"CID stand-in INT8 drop: whole graph {full['drop']:.2f} points, context branch in float "
        f"{kept['drop']:.2f} points (FP32 {full['top1_fp32']:.2f}%)"
    )
    assert full["drop"] < 5.0 and kept["drop"] < 5.0


@pytest.mark.parametrize("calib", [None, np.zeros((0, 1, 32, 32), np.float32)])
def test_refuses_to_quantize_without_calibration(fp32_onnx, tmp_path, calib):
    with pytest.raises(
        UsageError, match="quantize needs calibration images from the training split; got none"
    ):
        quantize_static_int8(fp32_onnx, tmp_path / "q.onnx", calib, QuantizeConfig())
    assert not (tmp_path / "q.onnx").exists()


def test_not_a_model_and_budget_without_val(fp32_onnx, digits, tmp_path):
    bogus = tmp_path / "bogus.onnx"
    bogus.write_bytes(b"\x00\x01garbage" * 10)
    with pytest.raises(UsageError, match="bogus.onnx is not an ONNX model"):
        quantize_static_int8(bogus, tmp_path / "q.onnx", digits[0][:8], QuantizeConfig())
    with pytest.raises(UsageError, match="no validation images"):
        quantize_static_int8(fp32_onnx, tmp_path / "q.onnx", digits[0][:8], QuantizeConfig(max_drop=0.1))


def test_relative_paths_and_no_files_left_in_the_working_directory(fp32_onnx, digits, tmp_path, monkeypatch):
    """`cidpipe run` passes paths relative to the user's directory (runs/<name>/...); onnxruntime's
    pre-processing may drop temporary files into the working directory. Both must hold: the relative
    paths resolve, and the user's directory gets nothing but the artifact."""
    import shutil

    x_train, _, x_val, y_val = digits
    (tmp_path / "in").mkdir()
    shutil.copy(fp32_onnx, tmp_path / "in" / "model.onnx")
    monkeypatch.chdir(tmp_path)
    before = {p.name for p in tmp_path.iterdir()}
    calib, val = x_train[:64], (x_val, y_val)
    quantize_static_int8("in/model.onnx", "model.int8.onnx", calib, QuantizeConfig(), val=val)
    assert (tmp_path / "model.int8.onnx").is_file()
    assert {p.name for p in tmp_path.iterdir()} - before == {"model.int8.onnx"}

"""FP16 conversion runs in onnxruntime CPU and agrees; calibration images load from a directory."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from PIL import Image

from cidpipe.errors import DataError, UsageError
from cidpipe.export.parity import compare_onnx
from cidpipe.export.torch2onnx import read_onnx_metadata
from cidpipe.quantize.calibration import ArrayCalibrationReader, load_calibration_dir
from cidpipe.quantize.fp16 import convert_fp16


def test_fp16_runs_and_agrees(fp32_onnx, digits, tmp_path):
    _, _, x_val, y_val = digits
    out = tmp_path / "student.fp16.onnx"
    info = convert_fp16(fp32_onnx, out)
    proto = onnx.load(str(out))
    onnx.checker.check_model(proto)
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT  # FP32 I/O kept
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in proto.graph.initializer)
    assert info["bytes_fp16"] < info["bytes_fp32"]
    result = compare_onnx(fp32_onnx, out, x_val, y_val)
    assert result["agreement"] >= 99.0 and abs(result["drop"]) <= 1.0, result
    assert read_onnx_metadata(out)["precision"] == "fp16"


def test_calibration_dir_of_images(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(tmp_path / f"img{i}.png")
    x = load_calibration_dir(tmp_path, (3, 32, 32), mean=[0.5, 0.5, 0.5], std=[0.25, 0.25, 0.25])
    assert x.shape == (3, 3, 32, 32) and x.dtype == np.float32
    assert -2.01 <= x.min() and x.max() <= 2.01  # (v/255 - 0.5) / 0.25
    grey = load_calibration_dir(tmp_path, (1, 16, 16), mean=[0.5], std=[0.5], limit=2)
    assert grey.shape == (2, 1, 16, 16)
    reader = ArrayCalibrationReader("input", x, batch_size=2)
    assert [len(b["input"]) for b in iter(reader.get_next, None)] == [2, 1]


def test_calibration_dir_errors(tmp_path):
    with pytest.raises(
        UsageError, match="quantize needs calibration images from the training split; got none"
    ):
        load_calibration_dir(tmp_path, (3, 32, 32), [0.5], [0.5])
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="cannot read calibration image"):
        load_calibration_dir(tmp_path, (3, 32, 32), [0.5], [0.5])
    with pytest.raises(UsageError, match="does not exist"):
        load_calibration_dir(tmp_path / "nope", (3, 32, 32), [0.5], [0.5])

"""TensorRT: exact trtexec argument lists, the ONNX it consumes, and build_engine against a MOCK tensorrt.

TensorRT cannot be installed on this CPU-only machine, so ``build_engine`` is driven by fake_tensorrt.py
(a mock of the documented Python API, injected via sys.modules) to check the builder calls and the sidecar.
The ONNX file it consumes is real and checked.
"""

from __future__ import annotations

import json
import sys

import onnx
import pytest
from fake_tensorrt import make_fake_tensorrt

from cidpipe.errors import MissingDependency, ModelError, UsageError
from cidpipe.export import onnx2trt
from cidpipe.export.config import TensorRTConfig
from cidpipe.export.onnx2trt import build_engine, check_engine_compatible, sidecar_path
from cidpipe.export.torch2onnx import export_onnx
from cidpipe.export.trtexec import trtexec_command
from cidpipe.quantize.config import QuantizeConfig
from cidpipe.quantize.int8 import quantize_static_int8

SHAPE = (3, 32, 32)
TIMING_10 = ["--warmUp=500", "--iterations=200", "--duration=3", "--useSpinWait", "--percentile=90,95,99"]


def test_trtexec_fp16_trt10_exact():
    cfg = TensorRTConfig(precision="fp16", workspace_mb=512, min_batch=1, opt_batch=4, max_batch=16)
    assert trtexec_command(
        "m.onnx", "m.engine", cfg, input_shape=SHAPE, timing_cache="tc.bin", trt_version="10.3.0"
    ) == [
        "trtexec",
        "--onnx=m.onnx",
        "--saveEngine=m.engine",
        "--fp16",
        "--minShapes=input:1x3x32x32",
        "--optShapes=input:4x3x32x32",
        "--maxShapes=input:16x3x32x32",
        "--memPoolSize=workspace:512M",
        "--timingCacheFile=tc.bin",
        *TIMING_10,
    ]


def test_trtexec_int8_trt86_and_fp32_trt85_and_old_workspace():
    int8 = TensorRTConfig(precision="int8", workspace_mb=1024, max_batch=8)
    assert trtexec_command(
        "q.int8.onnx",
        "q.engine",
        int8,
        input_shape=SHAPE,
        trt_version="8.6.1.6",
        extra={"verbose": True, "useSpinWait": False},
    ) == [
        "trtexec",
        "--onnx=q.int8.onnx",
        "--saveEngine=q.engine",
        "--int8",
        "--fp16",
        "--minShapes=input:1x3x32x32",
        "--optShapes=input:1x3x32x32",
        "--maxShapes=input:8x3x32x32",
        "--memPoolSize=workspace:1024",
        "--warmUp=500",
        "--iterations=200",
        "--duration=3",
        "--percentile=90,95,99",
        "--verbose",
    ]
    fp32 = TensorRTConfig(precision="fp32", workspace_mb=256)
    assert trtexec_command(
        "m.onnx",
        "m.engine",
        fp32,
        input_shape=SHAPE,
        trt_version="8.5.2",
        build_only=True,
        dynamic_batch=False,
    ) == ["trtexec", "--onnx=m.onnx", "--saveEngine=m.engine", "--memPoolSize=workspace:256", "--buildOnly"]
    old = trtexec_command(
        "m.onnx", "m.engine", fp32, input_shape=SHAPE, trt_version="8.2.1", dynamic_batch=False
    )
    assert "--workspace=256" in old and "--percentile=99" in old
    assert (
        trtexec_command(
            "m.onnx", "e", fp32, input_shape=SHAPE, trt_version="10.0", build_only=True, dynamic_batch=False
        )[-1]
        == "--skipInference"
    )


def test_trtexec_rejects_bad_profile_and_flag_names():
    with pytest.raises(UsageError, match="min <= opt <= max"):
        trtexec_command("m.onnx", "e", TensorRTConfig(opt_batch=8, max_batch=4), input_shape=SHAPE)
    with pytest.raises(UsageError, match="not a flag name"):
        trtexec_command("m.onnx", "e", TensorRTConfig(), input_shape=SHAPE, extra={"x; rm -rf /": True})


@pytest.fixture
def trt_onnx(trained_net, tmp_path):
    """The real ONNX a TensorRT build consumes: opset 17, dynamic batch, checked."""
    path = export_onnx(trained_net, (1, 32, 32), tmp_path / "student.onnx", target="trt")
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    assert proto.opset_import[0].version == 17
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    return path


def test_build_engine_without_tensorrt_is_missing_dependency(trt_onnx, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # makes `import tensorrt` raise ImportError
    with pytest.raises(MissingDependency, match="TensorRT is not importable here; build on the target"):
        build_engine(trt_onnx, tmp_path / "e.engine", TensorRTConfig(), input_shape=(1, 32, 32))


@pytest.mark.parametrize(("version", "network_flags"), [("8.6.1", 1), ("10.3.0", 0)])
def test_build_engine_calls_and_sidecar(trt_onnx, tmp_path, monkeypatch, version, network_flags):
    fake = make_fake_tensorrt(version)
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    monkeypatch.setattr(onnx2trt, "gpu_info", lambda: {"gpu_name": "Orin", "compute_capability": "8.7"})
    cache = tmp_path / "timing.cache"
    cache.write_bytes(b"old")
    cfg = TensorRTConfig(
        precision="fp16", workspace_mb=64, min_batch=1, opt_batch=2, max_batch=8, timing_cache=cache
    )
    engine = tmp_path / "student.engine"
    sidecar = build_engine(trt_onnx, engine, cfg, input_shape=(1, 32, 32))

    assert ("create_network", network_flags) in fake.calls
    assert ("set_memory_pool_limit", fake.MemoryPoolType.WORKSPACE, 64 << 20) in fake.calls
    assert ("set_flag", fake.BuilderFlag.FP16) in fake.calls
    assert ("set_flag", fake.BuilderFlag.INT8) not in fake.calls
    assert ("set_shape", "input", (1, 1, 32, 32), (2, 1, 32, 32), (8, 1, 32, 32)) in fake.calls
    assert ("create_timing_cache", b"old") in fake.calls
    assert engine.read_bytes() == b"FAKE-ENGINE" and cache.read_bytes() == b"old+timings"
    on_disk = json.loads(sidecar_path(engine).read_text())
    assert on_disk == sidecar
    assert on_disk["tensorrt_version"] == version and on_disk["gpu_name"] == "Orin"
    assert on_disk["compute_capability"] == "8.7" and on_disk["precision"] == "fp16"
    assert on_disk["profile"] == {"min": [1, 1, 32, 32], "opt": [2, 1, 32, 32], "max": [8, 1, 32, 32]}


def test_int8_engine_needs_a_qdq_model(trt_onnx, digits, tmp_path, monkeypatch):
    fake = make_fake_tensorrt("10.3.0")
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    monkeypatch.setattr(onnx2trt, "gpu_info", lambda: {"gpu_name": None, "compute_capability": None})
    cfg = TensorRTConfig(precision="int8")
    with pytest.raises(UsageError, match="has no Q/DQ nodes"):
        build_engine(trt_onnx, tmp_path / "e.engine", cfg, input_shape=(1, 32, 32))
    x_train = digits[0][:64]
    qdq = tmp_path / "student.int8.onnx"
    quantize_static_int8(trt_onnx, qdq, x_train, QuantizeConfig(target="trt"))
    build_engine(qdq, tmp_path / "q.engine", cfg, input_shape=(1, 32, 32))
    assert ("set_flag", fake.BuilderFlag.INT8) in fake.calls


def test_engine_compatibility_check():
    sidecar = {"tensorrt_version": "8.6.1", "gpu_name": "Orin", "compute_capability": "8.7"}
    check_engine_compatible(
        sidecar, installed_version="8.6.1.6", gpu={"gpu_name": "Orin", "compute_capability": "8.7"}
    )
    with pytest.raises(
        ModelError,
        match=r"engine built with TensorRT 8.6.1 on Orin \(8.7\); this machine has "
        r"TensorRT 10.3.0 on NVIDIA H100 \(9.0\): rebuild it",
    ):
        check_engine_compatible(
            sidecar, installed_version="10.3.0", gpu={"gpu_name": "NVIDIA H100", "compute_capability": "9.0"}
        )
    with pytest.raises(ModelError):
        check_engine_compatible(
            sidecar, installed_version="8.6.1", gpu={"gpu_name": "Orin", "compute_capability": "7.2"}
        )

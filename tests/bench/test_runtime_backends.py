"""OrtBackend on a real session; TensorRT's version/GPU guard (tensorrt itself cannot exist here)."""

from __future__ import annotations

import ast
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from cidpipe_runtime.errors import BackendUnavailable, EngineMismatch, InputError, ProviderMismatch
from cidpipe_runtime.ort_backend import OrtBackend
from cidpipe_runtime.trt_backend import TrtBackend, check_engine_compatible, read_engine_sidecar

RUNTIME_DIR = Path(__file__).resolve().parents[2] / "export" / "cidpipe_runtime"


def test_ort_logits_match_numpy(onnx_path, classifier, eval_set):
    backend = OrtBackend(str(onnx_path), threads=1)
    assert backend.provider == "CPUExecutionProvider" and backend.name == "onnxruntime"
    logits = backend.run(eval_set["x"][:7])
    np.testing.assert_allclose(logits, classifier.logits(eval_set["x"][:7]), rtol=1e-5, atol=1e-5)


def test_cuda_provider_on_cpu_onnxruntime_fails_loudly(onnx_path):
    with pytest.raises(ProviderMismatch, match="CUDAExecutionProvider"):
        OrtBackend(str(onnx_path), provider="CUDAExecutionProvider")


def test_corrupt_model_is_input_error(tmp_path):
    bogus = tmp_path / "bad.onnx"
    bogus.write_text("nope")
    with pytest.raises(InputError, match="cannot load"):
        OrtBackend(str(bogus))


def write_sidecar(engine: Path, **facts) -> None:
    engine.write_bytes(b"\0")
    Path(str(engine) + ".json").write_text(json.dumps(facts))


def test_engine_version_guard(tmp_path):
    engine = tmp_path / "m.engine"
    write_sidecar(engine, tensorrt_version="8.6.1", gpu_name="Orin", compute_capability="8.7")
    facts = read_engine_sidecar(str(engine))
    check_engine_compatible(facts, "8.6.1.6")  # the build number does not matter
    with pytest.raises(EngineMismatch, match="built with TensorRT 8.6.1 but TensorRT 10.3.0"):
        check_engine_compatible(facts, "10.3.0")
    with pytest.raises(EngineMismatch, match="compute capability 8.7"):
        check_engine_compatible(facts, "8.6.1", compute_capability="7.2")


def test_engine_without_sidecar_is_refused(tmp_path):
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"\0")
    with pytest.raises(EngineMismatch, match="missing"):
        read_engine_sidecar(str(engine))


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="tensorrt is installed here")
def test_trt_backend_without_tensorrt(tmp_path):
    """No TensorRT on this CPU machine: the backend must say so instead of raising ImportError."""
    engine = tmp_path / "m.engine"
    write_sidecar(engine, tensorrt_version="10.3.0")
    with pytest.raises(BackendUnavailable, match="tensorrt is not importable"):
        TrtBackend(str(engine))


def test_runtime_sources_parse_as_python38_and_stay_torch_free():
    """Jetson boards run old Pythons: the runtime must parse as Python 3.8 and import no torch/cidpipe."""
    for source in sorted(RUNTIME_DIR.glob("*.py")):
        text = source.read_text()
        tree = ast.parse(text, filename=str(source), feature_version=(3, 8))
        # PEP 604/585 annotations are only safe on 3.8 when annotations are not evaluated
        assert "from __future__ import annotations" in text, source
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            assert not [n for n in names if n.split(".")[0] in ("torch", "cidpipe")], source
            assert not isinstance(node, ast.Match), source

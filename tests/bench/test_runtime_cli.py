"""`python -m cidpipe_runtime` run as a real subprocess on a real ONNX model and npz."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

EXPORT_DIR = Path(__file__).resolve().parents[2] / "export"
FAST = ["--warmup-runs", "1", "--warmup-seconds", "0", "--runs", "5", "--min-seconds", "0"]


def run_cli(*args: str, debug: bool = False) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "CIDPIPE_DEBUG"}
    env["PYTHONPATH"] = str(EXPORT_DIR)  # as on a device: only the runtime directory is importable
    if debug:
        env["CIDPIPE_DEBUG"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "cidpipe_runtime", *args], capture_output=True, text=True, env=env, timeout=120
    )


def assert_one_error_line(proc: subprocess.CompletedProcess, fragment: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 1, proc.stdout
    document = json.loads(lines[0])
    assert list(document) == ["error"]
    assert fragment in document["error"]
    assert "\n" not in document["error"]
    assert "Traceback" not in proc.stderr


def test_json_schema_accuracy_and_agreement(onnx_path, npz_path, classifier, eval_set):
    proc = run_cli(
        "--model",
        str(onnx_path),
        "--data",
        str(npz_path),
        "--backend",
        "onnxruntime",
        "--batch-sizes",
        "1,8",
        "--threads",
        "1",
        *FAST,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 1
    doc = json.loads(lines[0])
    assert set(doc) == {
        "runtime_version",
        "backend",
        "provider",
        "model",
        "model_bytes",
        "threads",
        "accuracy",
        "latency",
        "peak_rss_bytes",
        "warnings",
        "host",
    }
    assert doc["backend"] == "onnxruntime" and doc["provider"] == "CPUExecutionProvider"
    assert doc["model"] == "tiny.onnx" and doc["model_bytes"] == onnx_path.stat().st_size
    assert doc["threads"] == 1 and doc["peak_rss_bytes"] > 1_000_000
    assert {"hostname", "machine", "python", "numpy", "onnxruntime"} <= set(doc["host"])

    pred = classifier.logits(eval_set["x"]).argmax(axis=1)
    top5 = np.argsort(-classifier.logits(eval_set["x"]), axis=1)[:, :5]
    expected = {
        "n": len(eval_set["y"]),
        "top1": float((pred == eval_set["y"]).mean() * 100),
        "top5": float((top5 == eval_set["y"][:, None]).any(axis=1).mean() * 100),
        "agreement": float((pred == eval_set["ref_pred"]).mean() * 100),
    }
    labels = eval_set["y"]
    classes = classifier.logits(eval_set["x"]).shape[1]
    expected["per_class_top1"] = [
        float((pred[labels == c] == c).mean() * 100) if (labels == c).any() else None for c in range(classes)
    ]
    expected["confusion"] = [
        [int(((labels == t) & (pred == p)).sum()) for p in range(classes)] for t in range(classes)
    ]
    assert doc["accuracy"] == expected
    assert expected["agreement"] == 90.0 and 0 < expected["top1"] < 100

    assert [entry["batch_size"] for entry in doc["latency"]] == [1, 8]
    for entry in doc["latency"]:
        assert entry["runs"] >= 5
        assert 0 < entry["min_ms"] <= entry["p50_ms"] <= entry["p90_ms"] <= entry["p99_ms"] <= entry["max_ms"]
        assert entry["throughput_ips"] == pytest.approx(entry["batch_size"] * 1000 / entry["mean_ms"])
        assert entry["cov"] == pytest.approx(entry["std_ms"] / entry["mean_ms"])


def test_batch_larger_than_dataset_is_tiled(onnx_path, npz_path):
    proc = run_cli(
        "--model",
        str(onnx_path),
        "--data",
        str(npz_path),
        "--backend",
        "onnxruntime",
        "--batch-sizes",
        "8",
        "--max-samples",
        "3",
        *FAST,
    )
    assert proc.returncode == 0, proc.stdout
    doc = json.loads(proc.stdout)
    assert doc["accuracy"]["n"] == 3
    assert doc["latency"][0]["batch_size"] == 8


def test_missing_model_file(tmp_path, npz_path):
    proc = run_cli(
        "--model", str(tmp_path / "nope.onnx"), "--data", str(npz_path), "--backend", "onnxruntime"
    )
    assert_one_error_line(proc, "model file not found")


def test_not_an_onnx_file(tmp_path, npz_path):
    bogus = tmp_path / "bogus.onnx"
    bogus.write_bytes(b"this is not a protobuf")
    proc = run_cli("--model", str(bogus), "--data", str(npz_path), "--backend", "onnxruntime")
    assert_one_error_line(proc, "onnxruntime cannot load")


def test_npz_missing_keys(tmp_path, onnx_path, eval_set):
    partial = tmp_path / "partial.npz"
    np.savez(partial, x=eval_set["x"])
    proc = run_cli("--model", str(onnx_path), "--data", str(partial), "--backend", "onnxruntime")
    assert_one_error_line(proc, "lacks key(s) y")


def test_unknown_backend(onnx_path, npz_path):
    proc = run_cli("--model", str(onnx_path), "--data", str(npz_path), "--backend", "openvino")
    assert_one_error_line(proc, "invalid choice: 'openvino'")


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="tensorrt is installed here")
def test_tensorrt_backend_without_tensorrt(onnx_path, npz_path):
    proc = run_cli("--model", str(onnx_path), "--data", str(npz_path), "--backend", "tensorrt")
    assert_one_error_line(proc, "tensorrt is not importable")


def test_traceback_only_with_debug(tmp_path, npz_path):
    proc = run_cli(
        "--model",
        str(tmp_path / "nope.onnx"),
        "--data",
        str(npz_path),
        "--backend",
        "onnxruntime",
        debug=True,
    )
    assert proc.returncode == 2
    assert "Traceback" in proc.stderr
    assert json.loads(proc.stdout)["error"].startswith("model file not found")


def test_runtime_never_imports_torch_or_cidpipe(onnx_path, npz_path):
    code = (
        "import sys\n"
        "from cidpipe_runtime.cli import main\n"
        f"rc = main(['--model', {str(onnx_path)!r}, '--data', {str(npz_path)!r}, '--backend', 'onnxruntime',"
        " '--warmup-runs', '0', '--warmup-seconds', '0', '--runs', '2', '--min-seconds', '0'])\n"
        "leaked = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'cidpipe'))\n"
        "assert rc == 0 and not leaked, leaked\n"
    )
    env = dict(os.environ, PYTHONPATH=str(EXPORT_DIR))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr

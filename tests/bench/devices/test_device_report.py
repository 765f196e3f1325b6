"""`devices check` writes facts as words, one per row: never a Python dict or list repr."""

from __future__ import annotations

from cidpipe.cli.device_report import report_rows
from tests.conftest import run_cli

JETSON_REPORT = {
    "name": "orin", "kind": "jetson", "address": "nvidia@10.0.0.5:22", "connect_s": 0.41, "reachable": True,
    "jetson": {"l4t": "R36.4.3", "jetpack": "6.2+b77", "power_mode": "MAXN (0)", "trtexec": "unknown"},
    "python": {"path": "python3", "version": "3.10.12", "machine": "aarch64"},
    "numpy": {"available": True, "version": "1.26.4"},
    "backends": {"onnxruntime": {"available": True, "version": "1.20.1",
                                 "providers": ["TensorrtExecutionProvider", "CPUExecutionProvider"]},
                 "tensorrt": {"available": False,
                              "error": "ModuleNotFoundError: No module named 'tensorrt'"}},
    "problems": ["trtexec not found"], "check_s": 2.5,
}  # fmt: skip


def test_a_jetson_report_reads_as_rows_of_words():
    rows = dict(report_rows(JETSON_REPORT))
    assert rows["python"] == "python3 (3.10.12, aarch64)"
    assert rows["numpy"] == "1.26.4"
    assert rows["backend onnxruntime"] == "1.20.1 (providers TensorrtExecutionProvider, CPUExecutionProvider)"
    assert rows["backend tensorrt"] == "not importable (ModuleNotFoundError: No module named 'tensorrt')"
    assert rows["jetson power_mode"] == "MAXN (0)" and rows["reachable"] == "yes"
    assert rows["problems"] == "trtexec not found" and rows["connect time"] == "0.41 s"
    assert not [value for value in rows.values() if value.startswith(("{", "["))]


def test_devices_check_local_prints_no_reprs():
    result = run_cli("devices", "check", "local")
    assert result.returncode == 0, result.stderr
    assert "backend onnxruntime" in result.stdout and "problems" in result.stdout
    assert "{" not in result.stdout and "'available'" not in result.stdout and "True" not in result.stdout

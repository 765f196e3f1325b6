"""The report's device-state table holds the device's state, not the accuracy breakdown of each row (that
has its own per-class and confusion tables), and a row whose top-1 came from an exact Q/DQ twin says so."""

from __future__ import annotations

from pathlib import Path

from cidpipe_runtime.ort_backend import EXACT_QDQ

from cidpipe.report import write_report
from tests.gate.fake_run import bench_result, write_run


def _section(markdown: str, title: str) -> str:
    return markdown.split(f"**{title}**", 1)[1].split("\n\n**", 1)[0]


def test_a_real_runs_device_state_is_not_its_confusion_matrix(real_run: Path, tmp_path: Path) -> None:
    markdown = write_report([real_run], tmp_path / "out")["markdown"].read_text()
    state = _section(markdown, "Device state during the bench")
    assert "onnx-int8@local" in state and "peak_mem=scope:" in state  # one line per row, dicts readable
    assert "confusion=" not in state and "per_class_top1=" not in state and "eval_samples=" not in state
    assert "{'" not in state  # no Python dict reprs
    assert "**Per-class top-1 % (test split)**" in markdown  # the breakdown lives in its own table


def test_exactly_judged_rows_are_noted_in_the_artifact_table(tmp_path: Path) -> None:
    results = [
        bench_result("onnx-int8", 96.1, 0.41, extra={"accuracy_arithmetic": EXACT_QDQ}),
        bench_result("onnx-fp32", 96.4, 0.50),
    ]
    markdown = write_report([write_run(tmp_path, results=results)], tmp_path / "out")["markdown"].read_text()
    artifacts = _section(markdown, "Artifacts (agreement: with the same model's FP32 PyTorch predictions)")
    [int8_line] = [line for line in artifacts.splitlines() if "| onnx-int8 |" in line]
    assert "exact Q/DQ arithmetic (as TensorRT computes)" in int8_line
    assert "exact Q/DQ" not in "".join(line for line in artifacts.splitlines() if "| onnx-fp32 |" in line)

"""Gate checks on fake run directories: each check type passes and fails on numbers the test chose."""

from __future__ import annotations

from pathlib import Path

import pytest

from cidpipe.errors import UsageError
from cidpipe.gate import evaluate_gate, load_gate_config
from tests.gate.fake_run import bench_result, write_run


def checks_by_name(report):
    return {check.name: check for check in report.checks}


def test_thresholds_that_hold_pass(run_dir: Path) -> None:
    gate = load_gate_config(
        {"min_top1": 96.0, "max_drop": 0.5, "max_size_mb": 0.5, "latency": [{"max_p99_ms": 1.0}]}
    )
    report = evaluate_gate(run_dir, gate, None)
    assert report.passed
    names = set(checks_by_name(report))
    assert {"min_top1[onnx-int8@local]", "max_drop[onnx-int8@local]", "p99[onnx-int8@local,bs=1]",
            "max_size[onnx-int8]", "status[onnx-int8@local,bs=1]"} <= names  # fmt: skip
    assert report.recipe == "quickstart"


def test_min_top1_fails_below_threshold(run_dir: Path) -> None:
    report = evaluate_gate(run_dir, load_gate_config({"min_top1": 96.2}), None)
    check = checks_by_name(report)["min_top1[onnx-int8@local]"]
    assert not report.passed and not check.passed
    assert (check.measured, check.allowed) == (96.1, 96.2)
    assert check.message == "measured 96.10 % < allowed 96.20 %"
    assert checks_by_name(report)["min_top1[onnx-fp32@local]"].passed


def test_max_drop_is_measured_against_the_fp32_reference(tmp_path: Path) -> None:
    run = write_run(tmp_path, reference_top1=97.0)
    report = evaluate_gate(run, load_gate_config({"max_drop": 0.8}), None)
    by_name = checks_by_name(report)
    assert by_name["max_drop[onnx-int8@local]"].measured == pytest.approx(0.9)
    assert not by_name["max_drop[onnx-int8@local]"].passed
    assert by_name["max_drop[onnx-fp32@local]"].passed  # 0.6 points
    assert "FP32 reference 97.00 %" in by_name["max_drop[onnx-int8@local]"].message


def test_p99_limit_selects_artifact_device_and_batch(tmp_path: Path) -> None:
    results = [bench_result("onnx-int8", 96.0, 0.9), bench_result("onnx-int8", 96.0, 3.0, batch_size=8),
               bench_result("onnx-int8", 96.0, 5.0, device="jetson")]  # fmt: skip
    run = write_run(tmp_path, results=results)
    gate = load_gate_config({"latency": [{"artifact": "onnx-int8", "max_p99_ms": 0.8}]})
    report = evaluate_gate(run, gate, None)
    p99 = [check for check in report.checks if check.kind == "p99"]
    assert [check.name for check in p99] == ["p99[onnx-int8@local,bs=1]"]
    assert p99[0].message == "measured 0.90 ms > allowed 0.80 ms"
    assert not report.passed


def test_latency_limit_without_a_matching_result_fails(run_dir: Path) -> None:
    gate = load_gate_config({"latency": [{"device": "jetson", "max_p99_ms": 5}]})
    report = evaluate_gate(run_dir, gate, None)
    check = checks_by_name(report)["p99[*@jetson,bs=1]"]
    assert not check.passed and "no bench result matches" in check.message


def test_max_size_per_format(run_dir: Path) -> None:
    report = evaluate_gate(run_dir, load_gate_config({"max_size_mb": 0.1}), None)
    by_name = checks_by_name(report)
    assert by_name["max_size[onnx-int8]"].passed and by_name["max_size[onnx-int8]"].measured == 0.095
    assert not by_name["max_size[onnx-fp32]"].passed
    assert by_name["max_size[onnx-fp32]"].message == "measured 0.310 MB > allowed 0.100 MB"


def test_bias_gap(tmp_path: Path) -> None:
    bias = {"aligned": 99.0, "unbiased": 70.0, "conflicting": 66.0, "gap": 33.0}
    run = write_run(tmp_path, bias=bias)
    failing = checks_by_name(evaluate_gate(run, load_gate_config({"max_bias_gap": 30}), None))[
        "bias_gap[student]"
    ]
    assert not failing.passed and failing.measured == 33.0 and "conflicting 66.00 %" in failing.message
    assert evaluate_gate(run, load_gate_config({"max_bias_gap": 35}), None).passed


def test_bias_gap_without_bias_metrics_fails(run_dir: Path) -> None:
    report = evaluate_gate(run_dir, load_gate_config({"max_bias_gap": 30}), None)
    assert not report.passed and "biased dataset" in report.checks[-1].message


def test_failed_artifacts_are_failed_checks(tmp_path: Path) -> None:
    results = [
        bench_result("onnx-fp32", 96.4, 0.5),
        bench_result("trt-int8", None, None, status="exported-but-failed", error="engine build failed"),
        bench_result("onnx-fp16", None, None, status="failed", error="opset 21 unsupported"),
    ]
    report = evaluate_gate(write_run(tmp_path, results=results), load_gate_config({}), None)
    failed = {check.name: check.message for check in report.failed}
    assert failed == {"status[trt-int8@local,bs=1]": "status exported-but-failed: engine build failed",
                      "status[onnx-fp16@local,bs=1]": "status failed: opset 21 unsupported"}  # fmt: skip


def test_threshold_of_a_failed_artifact_says_it_failed(tmp_path: Path) -> None:
    """min_top1/max_drop still fail for an artifact whose every row failed, and say why: not "no top-1
    recorded" (which sends the user to rerun a bench that did run)."""
    results = [
        bench_result("onnx-fp32", 96.4, 0.5),
        bench_result("onnx-int8", None, None, status="exported-but-failed", error="session failed"),
        bench_result("onnx-int8", None, None, batch_size=8, status="exported-but-failed", error="same"),
    ]
    run = write_run(tmp_path, results=results)
    report = evaluate_gate(run, load_gate_config({"min_top1": 90.0, "max_drop": 1.0}), None)
    failed = {check.name: check.message for check in report.failed}
    why = "not measured: every bench row of onnx-int8@local failed (status exported-but-failed)"
    assert failed["min_top1[onnx-int8@local]"] == why and failed["max_drop[onnx-int8@local]"] == why
    assert checks_by_name(report)["min_top1[onnx-fp32@local]"].passed
    assert checks_by_name(report)["max_drop[onnx-fp32@local]"].passed


def test_without_bench_min_top1_judges_the_student(tmp_path: Path) -> None:
    run = write_run(tmp_path, stages=("teacher", "student"), student_test_top1=91.0)
    report = evaluate_gate(run, load_gate_config({"min_top1": 92.0}), None)
    assert [check.name for check in report.failed] == ["min_top1[student]"]


def test_disabled_gate_runs_no_checks(run_dir: Path) -> None:
    report = evaluate_gate(run_dir, load_gate_config({"enabled": False, "min_top1": 99.9}), None)
    assert report.passed and report.checks == [] and "disabled" in report.notes[0]


def test_not_a_run_dir_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="not a run directory") as caught:
        evaluate_gate(tmp_path / "empty", load_gate_config({}), None)
    assert caught.value.exit_code == 2
    with pytest.raises(UsageError, match="does not exist"):
        evaluate_gate(tmp_path / "missing", load_gate_config({}), None)

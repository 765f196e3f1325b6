"""Latency checks that know about noise and hosts: p50 or p99, a tolerance, noisy rows, "not comparable".

A baseline recorded on another host (another CPU model, core count, board, power mode or runtime version)
gives latency checks that are neither passed nor failed: outcome ``not_comparable``, a <skipped> JUnit
testcase, "⚪ not comparable" in the Markdown summary, and exit 0 from ``cidpipe gate`` when everything else
passed. Accuracy is compared whatever the host.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from cidpipe.errors import UsageError
from cidpipe.gate import evaluate_gate, load_gate_config, markdown_summary, save_baseline, write_junit
from tests.conftest import run_cli
from tests.gate.fake_run import HOST, bench_result, write_run

LAPTOP = {**HOST, "hostname": "my-laptop", "cpu_model": "Apple M3", "machine": "arm64", "cpu_count": 8}


def _checks(report, kind: str) -> dict:
    return {check.name: check for check in report.checks if check.kind == kind}


def test_p50_limit_with_a_tolerance(run_dir: Path) -> None:
    gate = load_gate_config({"latency": [{"artifact": "onnx-int8", "metric": "p50", "max_ms": 0.24,
                                          "tolerance": 0.1}]})  # fmt: skip
    [check] = _checks(evaluate_gate(run_dir, gate), "p50").values()
    assert check.name == "p50[onnx-int8@local,bs=1]" and check.passed  # 0.25 <= 0.24 * 1.1
    assert check.allowed == pytest.approx(0.264) and "limit 0.24 ms +10 %" in check.message
    assert "95 % CI 0.24" in check.message  # the p50's bootstrap interval is shown with it


@pytest.mark.parametrize(
    ("entry", "needle"),
    [
        ({"metric": "p50", "max_p99_ms": 1}, "max_p99_ms bounds p99"),
        ({"metric": "p50"}, "needs max_ms"),
        ({"max_ms": 1, "max_p99_ms": 1}, "not both"),
        ({"metric": "p95", "max_ms": 1}, "latency.0.metric"),
    ],
)
def test_bad_latency_entries_are_usage_errors(entry: dict, needle: str) -> None:
    with pytest.raises(UsageError, match=needle):
        load_gate_config({"latency": [entry]})


def test_a_noisy_row_is_flagged_or_failed(tmp_path: Path) -> None:
    run = write_run(tmp_path, results=[bench_result("onnx-fp32", 96.4, 0.9, p50_ms=0.3, noisy=True, cov=0.4)])
    limit = {"latency": [{"metric": "p50", "max_ms": 1.0}]}
    [flagged] = _checks(evaluate_gate(run, load_gate_config(limit)), "p50").values()
    assert flagged.passed and flagged.noisy and "noisy row: CoV 0.400" in flagged.message
    assert "⚠️ noisy" in markdown_summary(evaluate_gate(run, load_gate_config(limit)))
    strict = evaluate_gate(run, load_gate_config({**limit, "noisy_latency": "fail"}))
    [refused] = _checks(strict, "p50").values()
    assert not refused.passed and refused.noisy and "rerun on a quiet machine" in refused.message
    assert strict.to_dict()["counts"]["noisy"] == 1


def test_another_host_is_not_comparable_but_accuracy_still_is(tmp_path: Path) -> None:
    laptop = write_run(tmp_path / "laptop", results=[bench_result("onnx-int8", 96.1, 0.41, host=LAPTOP)])
    baseline = save_baseline(laptop, tmp_path / "baseline.json")
    assert baseline["hosts"]["local"]["cpu_model"] == "Apple M3"
    # The CI runner is 3x slower and lost 2 points: the latency is not comparable, the accuracy fails.
    ci = write_run(tmp_path / "ci", results=[bench_result("onnx-int8", 94.1, 1.30)])
    gate = load_gate_config({"latency_metric": "p50"})
    report = evaluate_gate(ci, gate, baseline)
    [latency] = _checks(report, "baseline.p50").values()
    assert latency.outcome == "not_comparable" and latency.passed
    assert "cpu_model 'AMD EPYC 7763 64-Core Processor' vs baseline 'Apple M3'" in latency.message
    [top1] = _checks(report, "baseline.top1").values()
    assert not top1.passed and not report.passed and report.failed == [top1]
    junit = ET.parse(write_junit(report, tmp_path / "junit.xml")).getroot()
    suite = junit.find("testsuite")
    assert suite.get("skipped") == "1" and suite.get("failures") == "1"
    case = next(c for c in suite.iter("testcase") if c.get("name") == latency.name)
    assert case.find("skipped") is not None and case.find("failure") is None
    summary = markdown_summary(report)
    assert "1 not comparable" in summary and "⚪ not comparable" in summary


def test_a_baseline_without_hosts_is_not_comparable_for_latency(tmp_path: Path) -> None:
    old = write_run(tmp_path / "old", results=[bench_result("onnx-int8", 96.1, 0.41, host=None)])
    baseline = save_baseline(old, tmp_path / "baseline.json")
    new = write_run(tmp_path / "new", results=[bench_result("onnx-int8", 96.1, 0.42)])
    [latency] = _checks(evaluate_gate(new, load_gate_config({}), baseline), "baseline.p50").values()
    assert latency.outcome == "not_comparable" and "records no host" in latency.message


def test_cli_exit_code_is_0_when_only_latency_is_not_comparable(tmp_path: Path) -> None:
    laptop = write_run(tmp_path / "laptop", results=[bench_result("onnx-int8", 96.1, 0.41, host=LAPTOP)])
    save_baseline(laptop, tmp_path / "baseline.json")
    ci = write_run(tmp_path / "ci", results=[bench_result("onnx-int8", 96.1, 1.30)])
    gate_file = tmp_path / "gate.yaml"
    gate_file.write_text("latency_metric: p50\n")
    result = run_cli("gate", str(ci), "--gate", str(gate_file), "--baseline", str(tmp_path / "baseline.json"))
    assert result.returncode == 0, result.stderr[-2000:]
    junit = (ci / "gate" / "junit.xml").read_text()
    assert 'skipped="1"' in junit and "not comparable: measured on another host" in junit


def test_saving_a_baseline_from_noisy_rows_warns(tmp_path: Path) -> None:
    noisy = write_run(tmp_path / "noisy", results=[bench_result("onnx-int8", 96.1, 4.7, noisy=True, cov=1.7),
                                                   bench_result("onnx-fp32", 96.4, 0.6)])  # fmt: skip
    proc = run_cli("gate", str(noisy), "--save-baseline", str(tmp_path / "base.json"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "warning: 1 baseline row(s) were noisy (onnx-int8@local,bs=1)" in proc.stderr
    quiet = write_run(tmp_path / "quiet", results=[bench_result("onnx-int8", 96.1, 0.5)])
    proc = run_cli("gate", str(quiet), "--save-baseline", str(tmp_path / "quiet.json"))
    assert proc.returncode == 0 and "noisy" not in proc.stderr

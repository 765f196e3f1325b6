"""gate.json round trip, JUnit XML parsed back with xml.etree, the Markdown step summary."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

from cidpipe.gate import (
    evaluate_gate,
    load_gate_config,
    load_gate_json,
    markdown_summary,
    write_gate_json,
    write_junit,
    write_markdown_summary,
)
from tests.gate.fake_run import bench_result, write_run

GATE = {"min_top1": 96.2, "latency": [{"max_p99_ms": 0.6}]}


def failing_report(tmp_path: Path):
    results = [bench_result("onnx-fp32", 96.4, 0.55), bench_result("onnx-int8", 96.1, 0.41),
               bench_result("trt-fp16", None, None, status="failed", error='<bad> & "quoted"')]  # fmt: skip
    return evaluate_gate(write_run(tmp_path, results=results), load_gate_config(GATE), None)


def test_junit_parses_and_names_failed_checks(tmp_path: Path) -> None:
    report = failing_report(tmp_path)
    path = write_junit(report, tmp_path / "junit.xml")
    root = ET.parse(path).getroot()
    suite = root.find("testsuite")
    assert suite is not None and suite.get("name") == "cidpipe-gate"
    cases = suite.findall("testcase")
    assert len(cases) == len(report.checks) == int(suite.get("tests"))
    failed = {
        case.get("name"): case.find("failure").get("message")
        for case in cases
        if case.find("failure") is not None
    }
    assert failed == {
        "status[trt-fp16@local,bs=1]": 'status failed: <bad> & "quoted"',
        "min_top1[onnx-int8@local]": "measured 96.10 % < allowed 96.20 %",
        "min_top1[trt-fp16@local]": "not measured: every bench row of trt-fp16@local failed (status failed)",
    }
    assert int(suite.get("failures")) == 3


def test_markdown_summary_has_a_row_per_check(tmp_path: Path) -> None:
    report = failing_report(tmp_path)
    text = markdown_summary(report)
    assert text.startswith("### ❌ cidpipe gate failed: quickstart (3 of 8 checks failed)")
    rows = [line for line in text.splitlines() if line.startswith("| ✅") or line.startswith("| ❌")]
    assert len(rows) == len(report.checks)
    assert (
        "| ❌ | `min_top1[onnx-int8@local]` | 96.10 % | 96.20 % | measured 96.10 % < allowed 96.20 % |"
        in rows
    )
    assert (
        "| ✅ | `p99[onnx-int8@local,bs=1]` | 0.41 ms | 0.60 ms | measured 0.41 ms <= allowed 0.60 ms |"
        in rows
    )
    path = write_markdown_summary(report, tmp_path / "summary.md")
    assert path.read_text() == text
    write_markdown_summary(report, path, append=True)  # as for $GITHUB_STEP_SUMMARY
    assert path.read_text() == text + text


def test_passing_summary_and_gate_json_round_trip(run_dir: Path, tmp_path: Path) -> None:
    report = evaluate_gate(run_dir, load_gate_config({"min_top1": 90}), None)
    assert markdown_summary(report).startswith("### ✅ cidpipe gate passed: quickstart")
    path = write_gate_json(report, run_dir / "gate" / "gate.json")
    data = json.loads(path.read_text())
    counts = {"total": len(report.checks), "failed": 0, "not_comparable": 0, "noisy": 0}
    assert data["passed"] is True and data["counts"] == counts
    assert data["checks"][0].keys() == {"name", "kind", "passed", "message", "measured", "allowed", "unit",
                                        "outcome", "noisy"}  # fmt: skip
    assert data["checks"][0]["outcome"] == "pass"
    again = load_gate_json(path)
    assert again.to_dict() == data

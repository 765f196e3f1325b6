"""The headline: student vs teacher ratios, first in the report, computed from the bench rows.

A run directory with chosen latencies and sizes (tests/gate/fake_run.py writes the real manifests the
report reads), so every ratio printed can be checked exactly.
"""

from __future__ import annotations

import re

import pytest

from cidpipe.gate.rundir import load_run
from cidpipe.report import write_report
from cidpipe.report.headline import headline, headline_sentence
from tests.gate.fake_run import DEFAULT_RESULTS, bench_result, write_run


def _teacher(fmt: str, top1: float, p50: float, size: int) -> dict:
    row = bench_result(fmt, top1, p50 * 1.3, p50_ms=p50, size_bytes=size, agreement=100.0)
    row["role"] = "teacher"
    return row


TEACHER_ROWS = [_teacher("torch", 98.1, 3.0, 1_100_000), _teacher("onnx-fp32", 98.1, 2.0, 1_050_000)]


def test_ratios_are_teacher_over_student_on_the_same_device_and_batch(tmp_path):
    run = load_run(write_run(tmp_path, results=[*DEFAULT_RESULTS, *TEACHER_ROWS]))
    rows = {row.artifact: row for row in headline(run)}
    assert set(rows) == {"torch", "onnx-fp32", "onnx-int8"}
    assert rows["torch"].teacher_artifact == "torch" and rows["torch"].speedup_p50 == pytest.approx(3.0 / 0.5)
    assert rows["onnx-int8"].teacher_artifact == "onnx-fp32"
    assert rows["onnx-int8"].speedup_p50 == pytest.approx(2.0 / 0.25)
    assert rows["onnx-int8"].size_ratio == pytest.approx(1_050_000 / 95_000)
    assert rows["onnx-int8"].top1_delta == pytest.approx(96.1 - 98.1)
    assert rows["onnx-int8"].params_ratio == pytest.approx(272_000 / 78_000)
    assert headline_sentence(list(rows.values())).startswith("Student onnx-int8 vs teacher onnx-fp32")


def test_the_report_opens_with_the_headline(tmp_path):
    run_dir = write_run(tmp_path, results=[*DEFAULT_RESULTS, *TEACHER_ROWS])
    markdown = write_report([run_dir], tmp_path / "report", html=False)["markdown"].read_text()
    headings = re.findall(r"^## (.+)$", markdown, flags=re.MULTILINE)
    assert headings[0] == "Headline"
    assert (
        "**Student onnx-int8 vs teacher onnx-fp32 on local at batch 1: 8.0x faster (p50) and 11.1x smaller"
        in (markdown)
    )
    assert "| local | 1 | onnx-int8 | onnx-fp32 | 96.10 | 98.10 | -2.00 | 8.0x | 11.1x | 3.5x |" in markdown


def test_no_teacher_rows_no_headline(tmp_path):
    run_dir = write_run(tmp_path)
    assert headline(load_run(run_dir)) == []
    markdown = write_report([run_dir], tmp_path / "report", html=False)["markdown"].read_text()
    assert "## Headline" not in markdown


def test_a_real_runs_report_opens_with_its_measured_headline(real_run):
    """The tiny real run (teacher and student benched at batch 1 and 8): the numbers in the report's first
    table are the ratios of the bench rows, read back from the Markdown."""
    run = load_run(real_run)
    rows = headline(run)
    assert {row.batch_size for row in rows} == {1, 8} and {row.artifact for row in rows} >= {
        "torch",
        "onnx-fp32",
    }
    markdown = (real_run / "report" / "report.md").read_text()
    assert re.findall(r"^## (.+)$", markdown, flags=re.MULTILINE)[0] == "Headline"
    for row in rows:
        cells = f"| {row.device} | {row.batch_size} | {row.artifact} | {row.teacher_artifact} |"
        line = next(line for line in markdown.splitlines() if line.startswith(cells))
        assert f"| {row.speedup_p50:.1f}x |" in line and f"| {row.size_ratio:.1f}x |" in line
        teacher = next(
            r
            for r in run.teacher_results
            if (r["format"], r["batch_size"]) == (row.teacher_artifact, row.batch_size)
        )
        student = next(
            r for r in run.results if (r["format"], r["batch_size"]) == (row.artifact, row.batch_size)
        )
        assert row.speedup_p50 == pytest.approx(teacher["latency"]["p50_ms"] / student["latency"]["p50_ms"])
        assert row.eval_images == 64  # bench.max_eval_samples of the real run: the sentence says so
    assert headline_sentence(rows).endswith(" top-1 points on 64 test images.")


def test_the_sentence_is_about_the_deployed_artifact_even_when_it_is_slower(tmp_path):
    """INT8 slower than FP32 on this machine: the headline still names INT8 (what ships) and says how much
    slower or faster it is, rather than switching to whichever artifact happened to be fastest."""
    results = [bench_result("onnx-fp32", 96.4, 0.30, p50_ms=0.20, size_bytes=310_000),
               bench_result("onnx-int8", 96.1, 4.00, p50_ms=3.00, size_bytes=95_000)]  # fmt: skip
    rows = headline(load_run(write_run(tmp_path, results=[*results, *TEACHER_ROWS])))
    sentence = headline_sentence(rows)
    assert sentence.startswith("Student onnx-int8 vs teacher onnx-fp32 on local at batch 1: 1.5x slower")

"""write_report on fake run directories: the files exist, hold the run's numbers, and the HTML is one file."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from cidpipe.errors import UsageError
from cidpipe.gate import evaluate_gate, load_gate_config, write_gate_json
from cidpipe.report import write_report
from tests.gate.fake_run import bench_result, write_run

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 5_000, path


def test_single_run_report_holds_its_numbers(run_dir: Path, tmp_path: Path) -> None:
    paths = write_report([run_dir], tmp_path / "out")
    markdown, page = paths["markdown"].read_text(), paths["html"].read_text()
    for text in (markdown, page):
        assert "96.40" in text and "97.10" in text and "98.10" in text  # student test/val, teacher test
        assert "0.41" in text and "0.25" in text  # onnx-int8 p99 and p50
        assert "99.70" in text and "0.095 MB" in text and "4,000" in text  # agreement, size, throughput
        assert "resnet8" in text and "78,000" in text
        assert "0123456789ab" in text  # git sha in the provenance
        assert "governor=performance" in text  # device state from the bench result's extra
        assert "dataset: digits" in text  # the recipe
    assert "<details><summary>recipe.yaml (resolved)</summary>" in page
    for key in ("accuracy_latency", "curves_quickstart"):
        assert_png(paths[key])
        assert paths[key].parent == tmp_path / "out"
    assert "![top-1 versus p50 latency](accuracy_latency.png)" in markdown  # p50 by default


def test_html_is_self_contained(run_dir: Path, tmp_path: Path) -> None:
    page = write_report([run_dir], tmp_path / "out")["html"].read_text()
    references = re.findall(r"""(?:src|href)\s*=\s*["']([^"']*)["']""", page)
    assert references, "expected embedded images"
    assert all(reference.startswith("data:") for reference in references)
    assert "<link" not in page and "<script" not in page and "@import" not in page
    assert page.count('src="data:image/png;base64,') == 2


def test_text_is_escaped_in_html(tmp_path: Path) -> None:
    results = [
        bench_result("onnx-int8", 96.1, 0.41),
        bench_result("trt-fp16", None, None, status="failed", error="<script>alert(1)</script>"),
    ]
    run = write_run(tmp_path, results=results)
    page = write_report([run], tmp_path / "out")["html"].read_text()
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_seeds_are_aggregated_with_sample_std(tmp_path: Path) -> None:
    seeds = [{"seed": 0, "val_top1": 97.0, "test_top1": 96.0},
             {"seed": 1, "val_top1": 97.5, "test_top1": 96.5},
             {"seed": 2, "val_top1": 98.0, "test_top1": 97.0}]  # fmt: skip
    run = write_run(tmp_path, seeds=seeds)
    markdown = write_report([run], tmp_path / "out", html=False)["markdown"].read_text()
    # sample std (n-1) of 96.0, 96.5, 97.0 is 0.5 (the population std would be 0.41)
    assert "96.50 ± 0.50 (n=3)" in markdown and "97.50 ± 0.50 (n=3)" in markdown
    assert "| student | 2 | 98.00 | 97.00 |" in markdown
    assert not (tmp_path / "out" / "report.html").exists()


def test_gate_verdict_is_shown_when_gate_json_exists(run_dir: Path, tmp_path: Path) -> None:
    report = evaluate_gate(run_dir, load_gate_config({"min_top1": 96.2}), None)
    write_gate_json(report, run_dir / "gate" / "gate.json")
    assert json.loads((run_dir / "gate" / "gate.json").read_text())["passed"] is False
    paths = write_report([run_dir], tmp_path / "out")
    markdown, page = paths["markdown"].read_text(), paths["html"].read_text()
    assert "Gate failed: 1 of" in markdown and "| ❌ | min_top1[onnx-int8@local] |" in markdown
    assert 'class="verdict fail"' in page and "min_top1[onnx-int8@local]" in page


def test_bias_metrics_are_reported(tmp_path: Path) -> None:
    run = write_run(tmp_path, bias={"aligned": 99.0, "unbiased": 70.0, "conflicting": 66.0, "gap": 33.0})
    markdown = write_report([run], tmp_path / "out", html=False)["markdown"].read_text()
    assert "| student | 99.00 | 70.00 | 66.00 | 33.00 |" in markdown


def test_comparison_report_has_both_runs_and_deltas(tmp_path: Path) -> None:
    run_a = write_run(tmp_path, "baseline-kd")
    faster = [bench_result("onnx-int8", 95.6, 0.30, p50_ms=0.20, size_bytes=90_000)]
    run_b = write_run(tmp_path, "cid", results=faster, student_test_top1=96.9)
    paths = write_report([run_a, run_b], tmp_path / "out")
    markdown, page = paths["markdown"].read_text(), paths["html"].read_text()
    assert "cidpipe report: baseline-kd vs cid" in markdown
    assert "| Metric | baseline-kd | cid | Δ (cid − baseline-kd) |" in markdown
    assert "| student test top-1 % | 96.40 | 96.90 | +0.50 |" in markdown
    assert "| onnx-int8@local,bs=1 p99 ms | 0.410 | 0.300 | -0.110 |" in markdown
    assert "| onnx-fp32@local,bs=1 top-1 % | 96.40 | — | — |" in markdown  # only run A benched it
    assert "## Run baseline-kd" in markdown and "## Run cid" in markdown
    for key in ("accuracy_latency", "curves_baseline-kd", "curves_cid"):
        assert_png(paths[key])
    assert "Run baseline-kd" in page and "Run cid" in page


def test_report_errors(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="not a run directory"):
        write_report([tmp_path / "empty"], tmp_path / "out")
    with pytest.raises(UsageError, match="no run directory"):
        write_report([], tmp_path / "out")

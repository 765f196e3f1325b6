"""bench_local on real torch + onnxruntime artifacts of a tiny classifier, and the rendered table."""

from __future__ import annotations

import io
import json

import pytest
import torch
from rich.console import Console

from cidpipe.bench.config import BenchConfig
from cidpipe.bench.local import bench_local
from cidpipe.bench.result import ArtifactSpec, BenchResult
from cidpipe.bench.table import print_results, result_notes, results_to_json

FAST = {"warmup_runs": 1, "warmup_seconds": 0.0, "runs": 3, "min_seconds": 0.0, "threads": 1}


@pytest.fixture(scope="module")
def bench_rows(tmp_path_factory, classifier, classifier_factory, onnx_path, eval_set):
    other = classifier_factory(7).save_onnx(tmp_path_factory.mktemp("other") / "wrong.onnx")
    artifacts = [
        ArtifactSpec("student.pt", "torch", module=classifier.torch_module()),
        ArtifactSpec("student.onnx", "onnx-fp32", path=onnx_path),
        ArtifactSpec("wrong.onnx", "onnx-int8", path=other),
        ArtifactSpec("missing.onnx", "onnx-fp16", path=onnx_path.parent / "missing.onnx"),
        ArtifactSpec("student.engine", "trt-fp16", path=onnx_path),
    ]
    cfg = BenchConfig(backends=["torch", "onnxruntime", "tensorrt"], batch_sizes=[1, 4], **FAST)
    ref_pred = classifier.logits(eval_set["x"]).argmax(axis=1)
    threads_before = torch.get_num_threads()
    rows = bench_local(artifacts, eval_set["x"], eval_set["y"], ref_pred, cfg)
    assert torch.get_num_threads() == threads_before  # pinned during the bench, restored after
    return rows


def test_one_row_per_artifact_and_batch_size(bench_rows):
    assert [(r.artifact, r.batch_size) for r in bench_rows] == [
        (name, bs)
        for name in ["student.pt", "student.onnx", "wrong.onnx", "missing.onnx", "student.engine"]
        for bs in (1, 4)
    ]


def test_torch_and_onnx_pass_with_the_numpy_accuracy(bench_rows, classifier, eval_set):
    expected_top1 = float((classifier.logits(eval_set["x"]).argmax(axis=1) == eval_set["y"]).mean() * 100)
    for row in bench_rows[:4]:
        assert row.status == "pass" and row.error is None
        assert row.top1 == expected_top1 and row.agreement == 100.0 and row.top5 is not None
        assert row.latency["runs"] >= 3 and row.throughput_ips > 0 and row.peak_mem_bytes > 0
        assert row.threads == 1 and row.device == "local"
    assert (bench_rows[0].backend, bench_rows[0].provider) == ("torch", "eager-cpu")
    assert (bench_rows[2].backend, bench_rows[2].provider) == ("onnxruntime", "CPUExecutionProvider")
    assert bench_rows[0].size_bytes == (16 * 16 + 16 + 10 * 16 + 10) * 4
    assert bench_rows[2].size_bytes > bench_rows[0].size_bytes  # the file adds the graph around the weights


def test_low_agreement_is_exported_but_failed(bench_rows):
    wrong = [r for r in bench_rows if r.artifact == "wrong.onnx"]
    assert {r.status for r in wrong} == {"exported-but-failed"}
    assert "agreement" in wrong[0].error and wrong[0].agreement < 90
    assert wrong[0].latency is not None  # it ran, so its speed is still reported


def test_a_qat_graph_reports_its_agreement_without_the_floor(tmp_path, classifier, classifier_factory,
                                                           eval_set):
    """A QAT variant's weights were trained after export: it disagrees with the FP32 student because it is a
    further-trained model (measured: 85.7 % on a 100-class task whose accuracy rose), so the floor that
    catches broken conversions does not apply; its accuracy is judged by the gate's top-1 checks."""
    other = classifier_factory(7).save_onnx(tmp_path / "qat.onnx")
    spec = ArtifactSpec("quantize/model.int8.onnx", "onnx-int8", path=other, retrained=True)
    cfg = BenchConfig(backends=["onnxruntime"], batch_sizes=[1], **FAST)
    ref_pred = classifier.logits(eval_set["x"]).argmax(axis=1)
    (row,) = bench_local([spec], eval_set["x"], eval_set["y"], ref_pred, cfg)
    assert row.agreement < 90 and row.status == "pass" and row.error is None
    assert row.extra["retrained"] == "qat"


def test_unusable_artifacts_fail_with_one_line_and_the_bench_goes_on(bench_rows):
    missing = [r for r in bench_rows if r.artifact == "missing.onnx"]
    assert {r.status for r in missing} == {"failed"}
    assert "model file not found" in missing[0].error and missing[0].latency is None
    engine = [r for r in bench_rows if r.artifact == "student.engine"][0]
    assert engine.status == "failed" and engine.backend == "tensorrt"
    assert "\n" not in engine.error


def test_table_json_and_round_trip(bench_rows):
    console = Console(record=True, width=220, color_system=None)
    print_results(bench_rows, console, cov_threshold=0.1)
    text = console.export_text()
    for fragment in [
        "student.pt",
        "student.onnx",
        "exported-but-failed",
        "failed",
        "pass",
        "onnxruntime",
        "p50 ms",
        "img/s",
    ]:
        assert fragment in text
    notes = result_notes(bench_rows, cov_threshold=0.1)
    assert any(note.startswith("missing.onnx") and "model file not found" in note for note in notes)
    as_json = json.loads(json.dumps(results_to_json(bench_rows)))
    assert [BenchResult.from_dict(d) for d in as_json] == bench_rows


def test_backends_not_selected_are_skipped(classifier, onnx_path, eval_set):
    cfg = BenchConfig(backends=["onnxruntime"], batch_sizes=[2], max_eval_samples=10, **FAST)
    rows = bench_local(
        [
            ArtifactSpec("student.pt", "torch", module=classifier.torch_module()),
            ArtifactSpec("student.onnx", "onnx-fp32", path=onnx_path),
        ],
        eval_set["x"],
        eval_set["y"],
        None,
        cfg,
    )
    assert [r.artifact for r in rows] == ["student.onnx"]
    assert rows[0].agreement is None and rows[0].extra["eval_samples"] == 10


def test_bench_result_rejects_unknown_status():
    with pytest.raises(ValueError, match="status"):
        BenchResult(
            artifact="a",
            format="torch",
            backend="torch",
            provider=None,
            device="local",
            batch_size=1,
            status="ok",
        )


def test_a_ci_log_shows_the_quickstart_table_uncut(monkeypatch):
    """The quickstart's widest rows, printed where stdout is not a terminal (a CI log): names, backends and
    the MB sizes the gate uses are whole, nothing wraps."""
    from cidpipe.console import make_console

    monkeypatch.delenv("COLUMNS", raising=False)
    latency = {"p50_ms": 0.282, "p50_ci_low_ms": 0.279, "p50_ci_high_ms": 0.291, "p99_ms": 0.449, "cov": 0.15}
    rows = [BenchResult(name, fmt, "onnxruntime", "CPUExecutionProvider", "local", 1, "pass", top1=98.89,
                        agreement=100.0, latency=latency, throughput_ips=3375.9, size_bytes=size, noisy=True)
            for name, fmt, size in [("quantize/model.int8.onnx", "onnx-int8-cpu", 111_700),
                                    ("export/teacher.onnx", "onnx-fp32", 1_101_000)]]  # fmt: skip
    console = make_console(stderr=False)
    console.record, console.file = True, io.StringIO()
    print_results(rows, console, cov_threshold=0.1)
    table = [line for line in console.export_text().splitlines() if line.startswith(("│", "┃"))]
    body = [line for line in table if line.startswith("│")]
    assert len(body) == 2, "one line per row: nothing wrapped\n" + "\n".join(table)
    for fragment in ("quantize/model.int8.onnx", "onnx-int8-cpu", "onnxruntime", "0.279-0.291", "0.112 MB",
                     "1.10 MB", "0.150 noisy"):
        assert fragment in "\n".join(body), fragment

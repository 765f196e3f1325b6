"""A run that makes both INT8 graphs (CPU U8S8 and TensorRT S8S8: one format, two files) is benched and
gated per file: each gets its own name, size, top-1 and latency checks. Found by a new-user walkthrough:
both rows were "onnx-int8", so max_size_mb judged only the first and the gate passed a graph over budget."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cidpipe.bench.result import BenchResult
from cidpipe.bench.table import results_table
from cidpipe.gate import evaluate_gate, load_gate_config
from cidpipe.gate.rundir import load_run
from cidpipe.report.classes import per_class_table
from cidpipe.report.headline import headline, headline_sentence
from tests.conftest import run_cli, tiny_recipe_dict
from tests.gate.fake_run import bench_result, write_run


@pytest.fixture(scope="module")
def two_int8_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("two-int8")
    two_epochs = {"epochs": 2, "lr": 0.1, "schedule": "cosine"}
    recipe = tiny_recipe_dict(
        root / "runs", teacher={"train": two_epochs}, student={"train": two_epochs}, export={"enabled": True},
        quantize={"enabled": True, "targets": ["cpu", "trt"], "calibration": {"samples": 64}},
        bench={"enabled": True, "batch_sizes": [1], "runs": 10, "min_seconds": 0.0, "warmup_runs": 1,
               "warmup_seconds": 0.0, "max_eval_samples": 64},
    )  # fmt: skip
    path = root / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    proc = run_cli("run", str(path), cwd=root)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return root / "runs" / "tiny"


def _sizes(run_dir: Path) -> dict[str, int]:
    return {r["artifact"]: r["size_bytes"] for r in load_run(run_dir).results if r["format"] == "onnx-int8"}


def test_each_int8_graph_has_its_own_checks(two_int8_run: Path) -> None:
    sizes = _sizes(two_int8_run)
    cpu, trt = sizes["quantize/model.int8.onnx"], sizes["quantize/model.int8-trt.onnx"]
    assert trt > cpu  # the TensorRT graph keeps float weights behind Q/DQ until the engine is built
    between = (cpu + trt) / 2 / 1e6
    report = evaluate_gate(two_int8_run, load_gate_config({"max_size_mb": between, "min_top1": 0.0}), None)
    checks = {check.name: check for check in report.checks}
    assert checks["max_size[onnx-int8]"].passed
    assert not checks["max_size[onnx-int8-trt]"].passed and not report.passed
    assert checks["max_size[onnx-int8-trt]"].measured == pytest.approx(trt / 1e6, abs=1e-3)
    assert {"min_top1[onnx-int8@local]", "min_top1[onnx-int8-trt@local]",
            "status[onnx-int8@local,bs=1]", "status[onnx-int8-trt@local,bs=1]"} <= set(checks)  # fmt: skip


def test_a_latency_limit_names_a_format_or_one_of_its_graphs(two_int8_run: Path) -> None:
    def latency_names(artifact: str) -> list[str]:
        gate = load_gate_config({"latency": [{"artifact": artifact, "max_p99_ms": 1e6}]})
        return sorted(c.name for c in evaluate_gate(two_int8_run, gate, None).checks if c.kind == "p99")

    assert latency_names("onnx-int8") == ["p99[onnx-int8-trt@local,bs=1]", "p99[onnx-int8@local,bs=1]"]
    assert latency_names("onnx-int8-trt") == ["p99[onnx-int8-trt@local,bs=1]"]


def test_bench_table_and_report_tell_the_graphs_apart(two_int8_run: Path) -> None:
    run = load_run(two_int8_run)
    table = results_table([BenchResult.from_dict(r) for r in run.results])
    format_cells = list(table.columns[1]._cells)
    assert "onnx-int8" in format_cells and "onnx-int8-trt" in format_cells
    per_class = per_class_table(run)
    assert {"onnx-int8", "onnx-int8-trt"} <= {row[1] for row in per_class.rows}
    assert {row.artifact for row in headline(run)} >= {"onnx-int8", "onnx-int8-trt"}
    assert headline_sentence(headline(run)).startswith("Student onnx-int8 vs teacher")


def test_baselines_compare_each_graph(two_int8_run: Path, tmp_path: Path) -> None:
    from cidpipe.gate.baseline import load_baseline, save_baseline

    path = tmp_path / "baseline.json"
    save_baseline(two_int8_run, path)
    report = evaluate_gate(two_int8_run, load_gate_config({}), load_baseline(path))
    names = {check.name for check in report.checks if check.kind == "baseline.top1"}
    assert {"baseline.top1[onnx-int8@local]", "baseline.top1[onnx-int8-trt@local]"} <= names
    assert report.passed and not any("has no row" in note for note in report.notes)


def test_a_baseline_saved_before_variants_were_named_still_compares(tmp_path: Path) -> None:
    """A TensorRT-only run's old baseline called its graph onnx-int8; the row is now onnx-int8-trt.
    Upgrading must not fail a CI gate on the name (and a regression must still fail it)."""
    import json

    from cidpipe.gate.baseline import baseline_from_run, load_baseline

    row = bench_result("onnx-int8", 96.0, 0.9)
    run = write_run(tmp_path / "run", results=[{**row, "variant": "trt"}])
    old = baseline_from_run(load_run(run))
    for entry in old["results"]:  # as cidpipe wrote it then
        entry.pop("variant")
        entry["subject"] = "onnx-int8@local,bs=1"
    path = tmp_path / "old.json"
    path.write_text(json.dumps(old))
    report = evaluate_gate(run, load_gate_config({}), load_baseline(path))
    checks = {check.name: check for check in report.checks}
    assert report.passed and checks["baseline.top1[onnx-int8@local]"].measured == 96.0
    assert not any("has no row" in note for note in report.notes)
    worse = [{**bench_result("onnx-int8", 90.0, 0.9), "variant": "trt"}]
    failed = evaluate_gate(write_run(tmp_path / "worse", results=worse), load_gate_config({}),
                           load_baseline(path)).failed
    assert [check.name for check in failed] == ["baseline.top1[onnx-int8@local]"]

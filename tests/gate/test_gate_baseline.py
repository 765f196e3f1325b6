"""Baselines: save a run's numbers, then a worse run fails with named checks and an equal run passes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from cidpipe.errors import UsageError
from cidpipe.gate import evaluate_gate, load_baseline, load_gate_config, save_baseline
from tests.gate.fake_run import bench_result, write_run


def test_saved_baseline_holds_key_numbers(run_dir: Path, tmp_path: Path) -> None:
    saved = save_baseline(run_dir, tmp_path / "baseline.json")
    on_disk = json.loads((tmp_path / "baseline.json").read_text())
    assert on_disk["recipe"] == "quickstart" and on_disk["recipe_id"] == "a" * 64
    int8 = next(entry for entry in on_disk["results"] if entry["format"] == "onnx-int8")
    assert (int8["top1"], int8["p99_ms"], int8["size_bytes"], int8["batch_size"]) == (96.1, 0.41, 95_000, 1)
    assert saved["results"] == on_disk["results"]
    assert not list(tmp_path.glob(".baseline.json.*"))  # the temporary file was renamed, not left behind


def test_same_numbers_pass_against_their_own_baseline(run_dir: Path, tmp_path: Path) -> None:
    baseline = save_baseline(run_dir, tmp_path / "baseline.json")
    report = evaluate_gate(run_dir, load_gate_config({"latency_metric": "p99"}), baseline)
    kinds = {check.kind for check in report.checks}
    assert report.passed and {"baseline.top1", "baseline.p99"} <= kinds
    assert report.baseline["recipe_id_matches"] is True and report.notes == []


def test_worse_run_fails_with_named_checks(tmp_path: Path) -> None:
    good = write_run(tmp_path / "good")
    save_baseline(good, tmp_path / "baseline.json")
    worse_results = [
        bench_result("torch", 96.4, 0.70, p50_ms=0.50, size_bytes=320_000),
        bench_result("onnx-fp32", 96.0, 0.60, p50_ms=0.40, size_bytes=310_000),  # -0.4 points: tolerated
        bench_result("onnx-int8", 95.0, 0.83, p50_ms=0.30, size_bytes=95_000),  # -1.1 points, +102 % p99
    ]
    worse = write_run(tmp_path / "worse", results=worse_results)
    gate = load_gate_config({"baseline": str(tmp_path / "baseline.json"), "latency_metric": "p99"})
    report = evaluate_gate(worse, gate, None)  # loaded from gate.baseline
    failed = {check.name: check for check in report.failed}
    assert set(failed) == {"baseline.top1[onnx-int8@local]", "baseline.p99[onnx-int8@local,bs=1]"}
    p99 = failed["baseline.p99[onnx-int8@local,bs=1]"]
    assert p99.allowed == pytest.approx(0.41 * 1.25)
    assert p99.message == "measured 0.83 ms > allowed 0.51 ms (baseline 0.41 ms +25 %)"
    top1 = failed["baseline.top1[onnx-int8@local]"]
    assert top1.message == "measured 95.00 % < allowed 95.60 % (baseline 96.10 % -0.5 points)"


def test_tolerances_come_from_the_gate(tmp_path: Path) -> None:
    save_baseline(write_run(tmp_path / "good"), tmp_path / "baseline.json")
    slower = write_run(tmp_path / "slower", results=[bench_result("onnx-int8", 96.1, 0.60)])
    baseline = load_baseline(tmp_path / "baseline.json")
    p99 = {"latency_metric": "p99"}
    strict = evaluate_gate(slower, load_gate_config({"latency_tolerance": 0.25, **p99}), baseline)
    loose = evaluate_gate(slower, load_gate_config({"latency_tolerance": 0.5, **p99}), baseline)
    names = [check.name for check in strict.failed]
    assert "baseline.p99[onnx-int8@local,bs=1]" in names
    assert "baseline.p99[onnx-int8@local,bs=1]" not in [check.name for check in loose.failed]
    # torch and onnx-fp32 are in the baseline but were not benched this time: that fails, named.
    assert "baseline.top1[torch@local]" in names


def test_the_default_baseline_latency_is_the_stable_p50(run_dir: Path, tmp_path: Path) -> None:
    baseline = save_baseline(run_dir, tmp_path / "baseline.json")
    kinds = {check.kind for check in evaluate_gate(run_dir, load_gate_config({}), baseline).checks}
    assert "baseline.p50" in kinds and "baseline.p99" not in kinds


def test_baseline_from_another_recipe_is_a_usage_error(tmp_path: Path) -> None:
    save_baseline(write_run(tmp_path / "a", recipe="fashion-mnist"), tmp_path / "baseline.json")
    run = write_run(tmp_path / "b", recipe="quickstart")
    with pytest.raises(
        UsageError, match="recorded for recipe fashion-mnist, this run is recipe quickstart"
    ) as err:
        evaluate_gate(run, load_gate_config({}), load_baseline(tmp_path / "baseline.json"))
    assert err.value.exit_code == 2


def test_changed_recipe_id_still_compares_and_is_noted(tmp_path: Path) -> None:
    save_baseline(write_run(tmp_path / "a", recipe_id="1" * 64), tmp_path / "baseline.json")
    run = write_run(tmp_path / "b", recipe_id="2" * 64)
    report = evaluate_gate(run, load_gate_config({}), load_baseline(tmp_path / "baseline.json"))
    assert report.passed and any(check.kind == "baseline.p50" for check in report.checks)
    assert report.baseline["recipe_id_matches"] is False
    assert "recipe_id 111111111111, this run has 222222222222" in report.notes[0]


def test_missing_or_foreign_baseline_file_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="not found"):
        load_baseline(tmp_path / "nope.json")
    (tmp_path / "other.json").write_text('{"hello": 1}')
    with pytest.raises(UsageError, match="not a cidpipe baseline"):
        load_baseline(tmp_path / "other.json")


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (lambda b: b["results"][0].__setitem__("top1", "97.7"), "'results.0.top1': Input should be a valid"),
        (lambda b: b.__setitem__("schema", 99), "'schema': Input should be 1"),
        (lambda b: b["results"][0].__setitem__("batch_size", True), "'results.0.batch_size'"),
    ],
)
def test_a_wrongly_typed_baseline_is_refused_not_coerced(run_dir: Path, tmp_path: Path, change, needle):
    saved = save_baseline(run_dir, tmp_path / "baseline.json")
    change(saved)
    (tmp_path / "edited.json").write_text(json.dumps(saved))
    with pytest.raises(UsageError, match=re.escape(needle)) as err:
        load_baseline(tmp_path / "edited.json")
    assert err.value.exit_code == 2


def test_a_baseline_without_rows_says_so(run_dir: Path, tmp_path: Path) -> None:
    saved = save_baseline(run_dir, tmp_path / "baseline.json")
    (tmp_path / "empty.json").write_text(json.dumps({**saved, "results": []}))
    report = evaluate_gate(run_dir, load_gate_config({}), load_baseline(tmp_path / "empty.json"))
    assert any("holds no bench rows" in note for note in report.notes)


def test_the_cli_prints_the_notes_and_never_saves_a_failing_run_as_the_baseline(tmp_path: Path) -> None:
    from tests.conftest import run_cli

    save_baseline(write_run(tmp_path / "a", recipe_id="1" * 64), tmp_path / "baseline.json")
    run = write_run(tmp_path / "b", recipe_id="2" * 64)
    passed = run_cli("gate", str(run), "--baseline", str(tmp_path / "baseline.json"))
    assert passed.returncode == 0, passed.stderr[-2000:]
    assert "note: baseline" in passed.stdout and "the recipe changed since" in passed.stdout
    strict = tmp_path / "strict.yaml"
    strict.write_text("min_top1: 99.5\n")
    failed = run_cli("gate", str(run), "--gate", str(strict), "--save-baseline", str(tmp_path / "new.json"))
    assert failed.returncode == 1, failed.stderr[-2000:]
    assert f"baseline not saved to {tmp_path / 'new.json'} (a failing run is no baseline)" in failed.stderr
    assert not (tmp_path / "new.json").exists()

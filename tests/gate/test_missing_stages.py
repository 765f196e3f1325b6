"""A gate whose thresholds have nothing to measure because a stage never ran is exit 2 ("run bench
first"), not exit 1 (a regression), and it replaces the run's old verdict with that error: CI must tell a
pipeline that stopped short from a model that got worse."""

from __future__ import annotations

import yaml

from tests.conftest import run_cli, tiny_recipe_dict


def test_gate_on_a_run_missing_the_stage_its_thresholds_measure(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    raw = tiny_recipe_dict(tmp_path / "runs", gate={"enabled": True, "min_top1": 1.0})
    recipe.write_text(yaml.safe_dump(raw))
    run_dir = tmp_path / "runs" / "tiny"
    assert run_cli("train", str(recipe), "--device", "cpu").returncode == 0

    no_student = run_cli("gate", str(run_dir))
    assert no_student.returncode == 2, no_student.stderr
    assert "has no student stage" in no_student.stderr and "cidpipe distill" in no_student.stderr
    junit = (run_dir / "gate" / "junit.xml").read_text()
    assert 'errors="1"' in junit and "could not judge" in junit
    assert not (run_dir / "gate" / "gate.json").exists()

    assert run_cli("distill", str(recipe), "--device", "cpu").returncode == 0
    passed = run_cli("gate", str(run_dir))
    assert passed.returncode == 0, passed.stderr
    assert (run_dir / "gate" / "gate.json").exists()

    latency = tmp_path / "latency.yaml"
    latency.write_text(yaml.safe_dump({"latency": [{"artifact": "*", "max_ms": 100}]}))
    no_bench = run_cli("gate", str(run_dir), "--gate", str(latency))
    assert no_bench.returncode == 2, no_bench.stderr
    assert "has no bench stage" in no_bench.stderr and f"cidpipe bench {run_dir}" in no_bench.stderr
    assert not (run_dir / "gate" / "gate.json").exists(), "the old PASS must not stay published"

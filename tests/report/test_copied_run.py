"""A run copied or renamed (CI downloads runs/tiny into runs/tiny-pr123) is still its recipe's run: benched
again there, its manifests keep the recipe's name, so the team baseline still applies; and a relative
baseline path given at run time is stored absolute, so the gate works from any directory.

Real parts: a finished `cidpipe run` (the real_run fixture), the CLI as a subprocess.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from tests.conftest import run_cli


def test_a_renamed_run_benched_again_still_gates_against_its_baseline(real_run: Path, tmp_path: Path):
    baseline = tmp_path / "base.json"
    assert run_cli("gate", str(real_run), "--save-baseline", str(baseline)).returncode == 0
    copy = tmp_path / "runs" / "tiny-pr123"
    shutil.copytree(real_run, copy)
    proc = run_cli("bench", str(copy), "--force")
    assert proc.returncode == 0, proc.stderr[-2000:]
    manifest = json.loads((copy / "bench" / "manifest.json").read_text())
    assert manifest["recipe"] == "tiny"  # the recipe's name, not the directory's
    gate = tmp_path / "gate.yaml"  # latency is not what this test is about: a shared machine is noisy
    gate.write_text(yaml.safe_dump({"latency_tolerance": 100.0, "accuracy_tolerance": 100.0}))
    proc = run_cli("gate", str(copy), "--baseline", str(baseline), "--gate", str(gate))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "was recorded for recipe" not in proc.stdout + proc.stderr


def test_a_relative_baseline_is_stored_absolute_in_the_run(real_run: Path, tmp_path: Path):
    work = tmp_path / "ci"
    work.mkdir()
    copy = tmp_path / "runs" / "tiny"
    shutil.copytree(real_run, copy)
    assert run_cli("gate", str(copy), "--save-baseline", str(work / "base.json")).returncode == 0
    # as docs/ci-example.yml does: `run` with a baseline relative to the job's directory (every stage cached)
    recipe = str(copy / "recipe.yaml")
    proc = run_cli("run", recipe, "--out", str(copy.parent), "--set", "gate.baseline=base.json", cwd=work)
    assert proc.returncode == 0, proc.stderr[-2000:]
    stored = yaml.safe_load((copy / "recipe.yaml").read_text())["gate"]["baseline"]
    assert stored == str(work / "base.json")
    proc = run_cli("gate", str(copy), cwd=tmp_path)  # another directory: the stored path still resolves
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]


def test_gate_and_report_refuse_a_bench_of_stages_rebuilt_since(real_run: Path, tmp_path: Path):
    """`quantize RUN --mode fp16` after a bench replaces the INT8 artifact the bench rows describe: the gate
    must not pass on those rows (it did, exit 0), and the report must not show them."""
    copy = tmp_path / "runs" / "tiny"
    shutil.copytree(real_run, copy)
    proc = run_cli("quantize", str(copy), "--mode", "fp16")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert not (copy / "quantize" / "model.int8.onnx").exists()
    # Said before it happened, with the way to keep both.
    assert ("quantize: the new stage replaces the finished one, which had the int8 model; one stage makes "
            "several when asked together: --set 'quantize.modes=[int8, fp16]'") in proc.stderr
    for verb in (["gate", str(copy)], ["report", str(copy), "--out", str(tmp_path / "report")]):
        proc = run_cli(*verb)
        assert proc.returncode == 4, (verb, proc.stdout[-1500:], proc.stderr[-1500:])
        assert "rebuilt since" in proc.stderr and f"cidpipe bench {copy}" in proc.stderr
    proc = run_cli("bench", str(copy))  # measuring the stages now on disk clears it
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert run_cli("report", str(copy), "--out", str(tmp_path / "report")).returncode == 0


@pytest.mark.parametrize(
    ("devices", "tolerate", "where"),
    [("[local,closed]", False, "stopped in its pre-flight (exit 8)"),  # found before any stage runs
     ("[closed]", True, "stopped at the bench stage (exit 8)")],  # left to the bench: all its rows failed
)  # fmt: skip
def test_a_run_stopped_before_the_gate_replaces_the_old_verdict(real_run, tmp_path, devices, tolerate, where):
    """CI publishes gate/junit.xml and summary.md whatever the exit code: a run that failed before the gate
    must not leave the previous run's (green) verdict there. Real failure: a device whose port is closed."""
    copy = tmp_path / "runs" / "tiny"
    shutil.copytree(real_run, copy)
    assert run_cli("gate", str(copy)).returncode == 0 and (copy / "gate" / "gate.json").is_file()  # green
    inventory = tmp_path / "devices.yaml"
    inventory.write_text(yaml.safe_dump({"devices": {"closed": {"kind": "ssh", "host": "127.0.0.1", "port": 1,
                                                                "connect_timeout_s": 5}}}))  # fmt: skip
    overrides = [f"bench.devices={devices}", f"bench.inventory={inventory}", "gate.enabled=true",
                 f"bench.tolerate_device_failures={str(tolerate).lower()}",
                 "bench.runs=11"]  # other settings: no earlier local rows are kept  # fmt: skip
    proc = run_cli("run", str(copy / "recipe.yaml"), "--out", str(copy.parent),
                   *[arg for value in overrides for arg in ("--set", value)])  # fmt: skip
    assert proc.returncode == 8, proc.stdout[-1500:] + proc.stderr[-1500:]
    junit = (copy / "gate" / "junit.xml").read_text()
    assert 'errors="1"' in junit and where in junit and "closed" in junit
    assert "not reached" in (copy / "gate" / "summary.md").read_text()
    assert not (copy / "gate" / "gate.json").exists()


def test_a_cached_bench_still_prints_its_table(real_run: Path, tmp_path: Path):
    copy = tmp_path / "runs" / "tiny"
    shutil.copytree(real_run, copy)
    proc = run_cli("bench", str(copy), env={"COLUMNS": "220"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "cached" in proc.stderr and "cidpipe bench" in proc.stdout
    assert "quantize/model.int8.onnx" in proc.stdout  # the stored rows, names not cut at 220 columns

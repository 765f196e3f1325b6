"""`cidpipe bench --device <ssh device>` end to end: a real run directory benched on a real sshd on loopback.

The remote rows must have exactly the accuracy of the local ONNX Runtime rows (same artifact, same data,
same runtime code), and the device's work directory must be empty afterwards.
"""

from __future__ import annotations

import pytest
import yaml

from tests.conftest import json_reply, run_cli, tiny_recipe_dict

pytestmark = pytest.mark.ssh


def test_bench_on_an_ssh_device_matches_local(sshd, tmp_path):
    sections = {
        "export": {"enabled": True, "parity": {"samples": 64}},
        "quantize": {"enabled": False},
        "bench": {"enabled": False},
    }
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe_dict(tmp_path / "runs", **sections)))
    built = run_cli("run", str(recipe), "--device", "cpu")
    assert built.returncode == 0, built.stderr[-2000:]
    device = sshd.device(name="loop").model_dump(mode="json", exclude={"name"}, exclude_none=True)
    inventory = tmp_path / "devices.yaml"
    inventory.write_text(yaml.safe_dump({"devices": {"loop": device}}))
    run_dir = tmp_path / "runs" / "tiny"
    result = run_cli(
        "bench",
        str(run_dir),
        "--device",
        "local",
        "--device",
        "loop",
        "--inventory",
        str(inventory),
        "--runs",
        "5",
        "--set",
        "bench.min_seconds=0",
        "--set",
        "bench.max_eval_samples=100",
        "--json",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = json_reply(result)["results"]
    # One row per ONNX file (the student's, and the teacher's where the bench includes it) on each device.
    local = {r["artifact"]: r for r in rows if r["device"] == "local" and r["format"] == "onnx-fp32"}
    remote = {r["artifact"]: r for r in rows if r["device"] == "loop"}
    assert local and set(remote) == set(local), rows
    for artifact, row in remote.items():
        assert row["status"] == "pass", row
        for key in ("top1", "top5", "agreement"):
            assert row[key] == local[artifact][key], (artifact, key)
        assert row["latency"]["p50_ms"] > 0
        assert row["latency"]["p50_ci_low_ms"] <= row["latency"]["p50_ms"] <= row["latency"]["p50_ci_high_ms"]
        assert row["host"]["cpu_model"] == local[artifact]["host"]["cpu_model"]  # the same machine
    workdir = sshd.root / "remote-workdir"
    assert not workdir.exists() or not any(workdir.iterdir())


def test_unknown_device_is_a_usage_error(tmp_path):
    result = run_cli("devices", "check", "jetsn", "--inventory", str(tmp_path / "none.yaml"))
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: ") and "Traceback" not in result.stderr

"""Local and remote rows of one bench live together: ``bench --device X`` replaces only X's rows.

A real run directory, a real sshd on loopback as the remote device, and the real gate afterwards: both the
local and the remote rows must survive the second bench and both must be gated.
"""

from __future__ import annotations

import pytest
import yaml

from cidpipe.manifest import read_manifest
from tests.conftest import json_reply, run_cli, tiny_recipe_dict

pytestmark = pytest.mark.ssh

FAST_BENCH = ["--runs", "3", "--set", "bench.min_seconds=0", "--set", "bench.max_eval_samples=64"]


def test_remote_bench_keeps_the_local_rows_and_the_gate_sees_both(sshd, tmp_path):
    sections = {
        "export": {"enabled": True, "parity": {"samples": 32}},
        "quantize": {"enabled": False},
        "bench": {"enabled": True, "runs": 3, "min_seconds": 0.0, "max_eval_samples": 64, "teacher": False},
    }
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe_dict(tmp_path / "runs", **sections)))
    built = run_cli("run", str(recipe), "--device", "cpu")
    assert built.returncode == 0, built.stderr[-2000:]
    run_dir = tmp_path / "runs" / "tiny"
    local_rows = read_manifest(run_dir / "bench", "bench").metrics["results"]
    assert {row["device"] for row in local_rows} == {"local"}

    device = sshd.device(name="loop").model_dump(mode="json", exclude={"name"}, exclude_none=True)
    inventory = tmp_path / "devices.yaml"
    inventory.write_text(yaml.safe_dump({"devices": {"loop": device}}))
    remote = run_cli("bench", str(run_dir), "--device", "loop", "--inventory", str(inventory), *FAST_BENCH)
    assert remote.returncode == 0, remote.stderr[-3000:]
    assert "keeping the earlier rows of local" in remote.stderr

    rows = read_manifest(run_dir / "bench", "bench").metrics["results"]
    by_device = {row["device"] for row in rows}
    assert by_device == {"local", "loop"}
    kept = [row for row in rows if row["device"] == "local"]
    assert kept == local_rows, "the local rows are the very rows of the first bench, not re-measured"

    gate_file = tmp_path / "gate.yaml"
    gate_file.write_text(yaml.safe_dump({"min_top1": 1.0}))
    verdict = run_cli("gate", str(run_dir), "--gate", str(gate_file), "--json")
    assert verdict.returncode == 0, verdict.stdout + verdict.stderr
    names = {check["name"] for check in json_reply(verdict)["checks"]}
    assert {"min_top1[onnx-fp32@local]", "min_top1[onnx-fp32@loop]"} <= names, names

    # Benching local again replaces the local rows and keeps the remote ones.
    again = run_cli("bench", str(run_dir), "--device", "local", "--force", *FAST_BENCH)
    assert again.returncode == 0, again.stderr[-2000:]
    final = read_manifest(run_dir / "bench", "bench").metrics["results"]
    assert [r for r in final if r["device"] == "loop"] == [r for r in rows if r["device"] == "loop"]
    assert {r["device"] for r in final} == {"local", "loop"}

    # Another bench setting: the local rows no longer describe this bench, and the user is told so.
    changed = run_cli("bench", str(run_dir), "--device", "loop", "--inventory", str(inventory), "--runs", "4",
                      "--set", "bench.min_seconds=0", "--set", "bench.max_eval_samples=64")  # fmt: skip
    assert changed.returncode == 0, changed.stderr[-2000:]
    assert "not keeping the earlier rows of local" in " ".join(changed.stderr.split())
    assert {r["device"] for r in read_manifest(run_dir / "bench", "bench").metrics["results"]} == {"loop"}

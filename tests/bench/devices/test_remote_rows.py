"""Rows from a device's runtime reply: the reply is the device's word, so the row keeps only what it should.

The device is the loopback sshd; its ``remote_python`` is a shell script that probes with the real
python but answers ``-m cidpipe_runtime`` with a well-shaped reply carrying extras a hostile or buggy
device could send: unknown latency keys, a nested host, a huge string, a CoV above the threshold with no
warning. The parsing is the real bench_remote code.
"""

from __future__ import annotations

import json
import stat
import sys

import numpy as np
import pytest
import yaml

from cidpipe.bench.remote_rows import bench_remote
from cidpipe.bench.result import ArtifactSpec
from cidpipe.config import validate_recipe
from tests.conftest import tiny_recipe_dict

pytestmark = pytest.mark.ssh

REPLY = {
    "runtime_version": "0.1.0", "backend": "onnxruntime", "provider": "CPUExecutionProvider",
    "model": "m.onnx", "model_bytes": 1000, "threads": 1, "peak_rss_bytes": 50_000_000,
    "accuracy": {"n": 4, "top1": 50.0, "agreement": 100.0},
    "latency": [{"batch_size": 1, "runs": 100, "mean_ms": 1.0, "p50_ms": 0.9, "p90_ms": 1.5, "p99_ms": 3.0,
                 "min_ms": 0.8, "max_ms": 4.0, "std_ms": 0.5, "cov": 0.5, "p50_ci_low_ms": 0.88,
                 "p50_ci_high_ms": 0.93, "bonus_ms": 1.0, "throughput_ips": 1000.0}],
    "warnings": [],  # says nothing about the CoV of 0.5
    "host": {"cpu_model": "x" * 5000, "cpu_count": 4, "nested": {"a": 1}, "flag": True},
}  # fmt: skip


def bench_with_a_stand_in_runtime(sshd, tmp_path, answer: str, role: str = "student", announce=None, **bench):
    """bench_remote on the loopback device whose remote python probes with the real interpreter but runs
    ``answer`` (a shell line) in place of ``-m cidpipe_runtime``; the uploaded model is never read."""
    python = tmp_path / "stand-in-python"
    python.write_text(f"""#!/bin/sh
if [ "$1" = "-m" ]; then {answer}; fi
exec {sys.executable} "$@"
""")
    python.chmod(python.stat().st_mode | stat.S_IXUSR)
    device = sshd.device(name="loop", remote_python=str(python)).model_dump(
        mode="json", exclude={"name"}, exclude_none=True
    )
    inventory = tmp_path / "devices.yaml"
    inventory.write_text(yaml.safe_dump({"devices": {"loop": device}}))
    raw = tiny_recipe_dict(tmp_path / "runs", bench={"enabled": True, "devices": ["loop"],
                                                     "inventory": str(inventory), **bench})
    (tmp_path / "m.onnx").write_bytes(b"uploaded, never read: the stand-in answers")
    np.savez(tmp_path / "eval.npz", x=np.zeros((4, 1, 2, 2), np.float32), y=np.zeros(4, np.int64))
    spec = ArtifactSpec("m.onnx", "onnx-fp32", path=tmp_path / "m.onnx", role=role)
    return bench_remote("loop", [spec], tmp_path / "eval.npz", validate_recipe(raw, "test"),
                        announce or (lambda _: None))


def test_remote_rows_keep_only_protocol_keys_and_decide_noise_themselves(sshd, tmp_path):
    answer = f"echo '{json.dumps(REPLY)}'; exit 0"
    said: list[str] = []
    [row] = bench_with_a_stand_in_runtime(sshd, tmp_path, answer, role="teacher", announce=said.append,
                                          cov_warning=0.1)
    assert said == ["m.onnx (onnxruntime on loop, over SSH): copy, top-1 and latency at batch 1"]
    assert row.status == "pass" and row.role == "teacher"
    assert "bonus_ms" not in row.latency and "throughput_ips" not in row.latency
    assert row.latency["p50_ci_low_ms"] == 0.88 and row.noisy is True  # 0.5 > cov_warning 0.1
    assert row.host == {"cpu_model": "x" * 200, "cpu_count": 4}
    assert row.extra["peak_mem"]["scope"] == "artifact"


def test_a_connection_lost_mid_run_is_named(sshd, tmp_path):
    """ssh exits 255 with no output when the connection drops while the runtime runs. Stand-in: a remote
    python that probes normally and then exits 255 silently (what the client sees of a lost connection;
    killing sshd mid-run would race the test). The row says the connection was lost, not "printed no
    result"."""
    rows = bench_with_a_stand_in_runtime(sshd, tmp_path, "exit 255")
    assert {row.status for row in rows} == {"failed"} and rows[0].failure == "device"
    assert "SSH connection to loop" in rows[0].error and "was lost" in rows[0].error

"""Jetson path over real SSH with stand-in board tools.

There is no Jetson board (nor TensorRT) here, so ``trtexec``, ``tegrastats``, ``nvpmodel`` and
``jetson_clocks`` are small shell scripts put first on the PATH of the loopback "board" (via the
device's ``env``). Everything else is real: sshd, the ssh client, uploads, the remote command lines that
cidpipe builds, the files the tools write on the device, the log retrieval and parsing, the cleanup.
The stand-ins record the argv they were called with so the tests check the exact command lines.
"""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pytest
import yaml

from cidpipe.bench.devices import SshTarget, check_device
from cidpipe.bench.devices.jetson import (
    build_engine_on_device,
    device_trtexec_args,
    parse_clocks,
    time_engine_on_device,
)
from cidpipe.bench.remote_rows import _timing_row, bench_remote
from cidpipe.bench.result import ArtifactSpec
from cidpipe.config import validate_recipe
from cidpipe.errors import DeviceError
from tests.conftest import tiny_recipe_dict

pytestmark = pytest.mark.ssh

FAKE_TOOLS = {
    "trtexec": r"""
        #!/bin/sh
        # stand-in trtexec: record argv, write the engine / touch the timing cache, print a TRT 8.6 log
        python3 -c 'import json, sys; print(json.dumps(sys.argv[1:]))' "$@" >> "$FAKE_LOG_DIR/trtexec.argv"
        for arg in "$@"; do
          case "$arg" in
            --saveEngine=*) printf 'ENGINE' > "${arg#--saveEngine=}" ;;
            --timingCacheFile=*) printf 'CACHE' >> "${arg#--timingCacheFile=}" ;;
            --loadEngine=*) [ -f "${arg#--loadEngine=}" ] || { echo "[E] missing engine" >&2; exit 1; } ;;
            --onnx=*bad*) echo "[E] [TRT] ModelImporter.cpp:771: ERROR: input: unsupported op" >&2; exit 1 ;;
            --exportTimes=*) times="${arg#--exportTimes=}" ;;
          esac
        done
        # per-query times as TensorRT 8.6 writes them (warm-up queries first), when asked for
        if [ -n "$times" ] && [ -z "$FAKE_NO_TIMES" ]; then
          python3 -c 'import json, sys; json.dump([{"startEnqMs": i, "h2dMs": 0.1, "computeMs": v - 0.2, \
        "d2hMs": 0.1, "latencyMs": v, "endToEndMs": v} for i, v in enumerate(map(float, sys.argv[2:]))], \
        open(sys.argv[1], "w"))' "$times" 9.0 8.0 2.0 2.2 1.9 2.1 2.5
        fi
        echo "&&&& RUNNING TensorRT.trtexec [TensorRT v8602] # trtexec $*"
        echo "[11/26/2025-10:00:00] [I] TensorRT version: 8.6.2"
        echo "[11/26/2025-10:00:00] [I] Selected Device: Orin"
        sleep 0.6
        echo "[11/26/2025-10:00:01] [I] Warmup completed 2 queries over 200 ms"
        echo "[11/26/2025-10:00:01] [I] Timing trace has 5 queries over 3.0 s"
        echo "[11/26/2025-10:00:01] [I] Throughput: 500 qps"
        echo "[11/26/2025-10:00:01] [I] Latency: min = 1.9 ms, max = 2.5 ms, mean = 2 ms, median = 2 ms, \
percentile(90%) = 2.1 ms, percentile(95%) = 2.2 ms, percentile(99%) = 2.4 ms"
        echo "[11/26/2025-10:00:01] [I] Total Host Walltime: 3.0 s"
        """,
    "tegrastats": r"""
        #!/bin/sh
        # stand-in tegrastats: --interval MS --logfile FILE, one Orin-style line per interval until killed
        while [ $# -gt 0 ]; do
          case "$1" in --interval) interval=$2; shift ;; --logfile) log=$2; shift ;; esac; shift
        done
        python3 -c 'import json, sys; print(json.dumps(sys.argv[1:]))' "$interval" "$log" \
          > "$FAKE_LOG_DIR/tegrastats.argv"
        while :; do
          echo "RAM 2020/7620MB (lfb 4x4MB) CPU [12%@1190,off] GR3D_FREQ 45% VDD_IN 5000mW/5000mW \
VDD_CPU_GPU_CV 1200mW/1200mW" >> "$log"
          sleep 0.1
        done
        """,
    "nvpmodel": """
        #!/bin/sh
        [ "$1" = "-q" ] && printf 'NV Power Mode: MAXN\\n0\\n'
        """,
    "jetson_clocks": """
        #!/bin/sh
        [ "$1" = "--show" ] && printf 'SOC family:tegra234  Machine:Jetson AGX Orin\\n\
GPU MinFreq=1300500000 MaxFreq=1300500000 CurrentFreq=1300500000\\n\
EMC MinFreq=204000000 MaxFreq=3199000000 CurrentFreq=3199000000 FreqOverride=1\\n'
        """,
}


@pytest.fixture
def board(sshd, tmp_path):
    """A jetson-kind device whose PATH starts with the stand-in tools."""
    fake_bin = tmp_path / "fake-bin"
    fake_bin.mkdir()
    for name, script in FAKE_TOOLS.items():
        path = fake_bin / name
        path.write_text(textwrap.dedent(script).lstrip())
        path.chmod(0o755)
    env = {"PATH": f"{fake_bin}:{os.environ['PATH']}", "FAKE_LOG_DIR": str(tmp_path)}
    device = sshd.device(name="orin", kind="jetson", workdir=str(tmp_path / "board-workdir"), env=env)
    return device, tmp_path


def recorded_argv(log_dir: Path, tool: str) -> list[list[str]]:
    return [json.loads(line) for line in (log_dir / f"{tool}.argv").read_text().splitlines()]


def test_build_and_time_an_engine_on_the_board(board, tmp_path):
    device, log_dir = board
    onnx_path = tmp_path / "student.onnx"
    onnx_path.write_bytes(b"onnx bytes")
    local_command = ["trtexec", f"--onnx={onnx_path}", "--saveEngine=/local/student.engine", "--fp16",
                     "--timingCacheFile=/local/cache", "--skipInference", "--shapes=input:1x3x32x32"]
    with SshTarget(device) as target:
        engine, build_log = build_engine_on_device(device, onnx_path, local_command, target=target)
        timing = time_engine_on_device(device, engine, ["--shapes=input:1x3x32x32", "--iterations=200"],
                                       target=target)
        engine_bytes = target.read_file(engine)
        leftovers = target.run(["ls", "-A", device.workdir]).stdout.split()

    workdir = device.workdir
    build_argv, timing_argv = recorded_argv(log_dir, "trtexec")
    assert build_argv[0].startswith(f"--onnx={workdir}/run.") and build_argv[0].endswith("/student.onnx")
    assert build_argv[1].startswith("--saveEngine=") and build_argv[1].endswith("/engine.partial")
    assert build_argv[2:] == [f"--timingCacheFile={workdir}/timing.cache", "--fp16", "--skipInference",
                              "--shapes=input:1x3x32x32"]
    assert timing_argv[:3] == [f"--loadEngine={engine}", "--shapes=input:1x3x32x32", "--iterations=200"]
    export_times = timing_argv[3]
    assert export_times.startswith(f"--exportTimes={workdir}/run.") and export_times.endswith("/times.json")
    assert engine.startswith(f"{workdir}/engines/student-") and engine_bytes == b"ENGINE"
    assert "TensorRT version: 8.6.2" in build_log
    assert sorted(leftovers) == ["engines", "timing.cache"]  # per-run dirs gone, caches kept

    [(interval, tegrastats_file)] = recorded_argv(log_dir, "tegrastats")
    assert interval == "100" and tegrastats_file.startswith(f"{workdir}/run.")
    assert timing.tegrastats_samples >= 2  # sampled while the 0.6 s "timing" ran
    assert timing.average_power_w == pytest.approx(5.0)
    assert timing.energy_per_query_mj == pytest.approx(5.0 * 1000 / 500)  # 5 W at 500 queries/s
    assert timing.energy_per_image_mj(8) == pytest.approx(5.0 * 1000 / 500 / 8)  # a query is a batch
    assert timing.trtexec["throughput_qps"] == 500
    assert timing.trtexec["stats"]["latency"]["p99_ms"] == 2.4
    assert timing.power_mode == "MAXN (0)"
    assert timing.clocks["state"] == "locked"
    assert timing.latencies_ms == [2.0, 2.2, 1.9, 2.1, 2.5]  # the 2 warm-up queries dropped
    assert timing.latency_source == "trtexec --exportTimes (per query)"


@pytest.mark.parametrize("with_times", [True, False])
def test_a_boards_trt_row_gets_the_protocols_statistics_from_per_query_times(board, tmp_path, with_times):
    device, _ = board
    if not with_times:  # a trtexec that wrote no --exportTimes file: the row falls back to its summary
        device = device.model_copy(update={"env": {**device.env, "FAKE_NO_TIMES": "1"}})
    onnx_path = tmp_path / "student.onnx"
    onnx_path.write_bytes(b"onnx bytes")
    with SshTarget(device) as target:
        build = ["trtexec", f"--onnx={onnx_path}"]
        engine, _ = build_engine_on_device(device, onnx_path, build, target=target)
        timing = time_engine_on_device(device, engine, ["--shapes=input:1x3x32x32"], target=target)
    base = {"artifact": "student.engine", "format": "trt-fp16", "backend": "trtexec", "device": "orin",
            "provider": "TensorRT", "batch_size": 1}  # fmt: skip
    row = _timing_row(base, timing, 1, cov_warning=0.1)
    if with_times:
        assert row.latency["runs"] == 5 and row.latency["p50_ms"] == pytest.approx(2.1)  # median of 5
        assert row.latency["p50_ci_low_ms"] <= 2.1 <= row.latency["p50_ci_high_ms"]
        assert row.latency["cov"] > 0 and row.noisy is False
        assert row.extra["latency_source"] == "trtexec --exportTimes (per query)"
    else:
        assert row.latency["p50_ms"] == 2 and "p50_ci_low_ms" not in row.latency  # trtexec's summary
        assert row.extra["latency_source"] == "trtexec summary (no --exportTimes file)"
    assert row.throughput_ips == 500 and row.status == "pass"


def test_onnxruntime_rows_on_a_jetson_record_its_power_mode_and_clocks(board, tmp_path, onnx_path, npz_path):
    """The runtime's rows (not only trtexec's) say what the board was set to, and carry the power mode in
    their host facts, which decide whether a row is comparable with its baseline."""
    device, _ = board
    inventory = tmp_path / "devices.yaml"
    entry = device.model_dump(mode="json", exclude={"name"}, exclude_none=True)
    inventory.write_text(yaml.safe_dump({"devices": {"orin": entry}}))
    raw = tiny_recipe_dict(tmp_path / "runs", bench={"enabled": True, "devices": ["orin"], "runs": 3,
                                                     "min_seconds": 0.0, "inventory": str(inventory)})
    spec = ArtifactSpec("tiny.onnx", "onnx-fp32", path=onnx_path)
    [row] = bench_remote("orin", [spec], npz_path, validate_recipe(raw, "test"))
    assert row.status == "pass" and row.device == "orin" and row.latency["runs"] >= 3
    assert row.extra["power_mode"] == "MAXN (0)" and row.extra["clocks"]["state"] == "locked"
    assert row.host["power_mode"] == "MAXN (0)"


def test_failed_build_is_one_line_and_leaves_nothing(board, tmp_path):
    device, _ = board
    onnx_path = tmp_path / "bad.onnx"
    onnx_path.write_bytes(b"not a model")
    with pytest.raises(DeviceError) as caught:
        build_engine_on_device(device, onnx_path, ["--fp16"])
    assert "\n" not in str(caught.value) and "unsupported op" in str(caught.value)
    with SshTarget(device) as target:
        assert target.run(["ls", "-A", device.workdir]).stdout.split() == []


def test_check_device_on_a_jetson_reports_missing_pieces_as_unknown(board):
    device, _ = board
    report = check_device(device)
    facts = report["jetson"]
    assert facts["power_mode"] == "MAXN (0)"
    assert facts["clocks"].startswith("SOC family:tegra234")
    # no /etc/nv_tegra_release and no L4T packages on this machine: reported, not a crash
    assert facts["l4t"] == "unknown" and facts["l4t_core_package"] == "unknown"


def test_argument_rewriting_and_clock_parsing_edge_cases():
    assert device_trtexec_args(["/usr/src/tensorrt/bin/trtexec", "--onnx=a.onnx", "--int8"]) == ["--int8"]
    assert parse_clocks(None) == {"state": "unknown"}
    dynamic = parse_clocks("GPU MinFreq=306000000 MaxFreq=1300500000 CurrentFreq=306000000\n")
    assert dynamic["state"] == "dynamic" and dynamic["gpu"]["current_hz"] == 306000000

"""TensorRT on a Jetson: build the engine ON the board with trtexec, time it, sample tegrastats.

Engines are built on the device itself because a TensorRT engine only runs on the GPU and TensorRT
version it was built with. ``trtexec_args`` come from :func:`cidpipe.export.trtexec.trtexec_command` (or
any list of trtexec flags); the program name and the path flags (``--onnx``, ``--saveEngine``,
``--loadEngine``, ``--timingCacheFile``) are replaced here by paths on the device. The timing cache lives
at ``<workdir>/timing.cache`` and engines under ``<workdir>/engines/``, both kept between runs.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cidpipe.bench.devices.inventory import DeviceSpec
from cidpipe.bench.devices.probe import (
    FIND_TRTEXEC,
    JETPACK_TRTEXEC,
    UNKNOWN,
    optional_output,
    parse_power_mode,
)
from cidpipe.bench.devices.ssh import SshTarget
from cidpipe.bench.devices.workspace import make_run_dir, remove_run_dir, upload
from cidpipe.bench.tegrastats_parse import parse_tegrastats
from cidpipe.bench.trtexec_parse import TrtexecReport, parse_trtexec, require_performance
from cidpipe.bench.trtexec_times import MAX_TIMES_BYTES, TIMES_FILE, TimesUnusable, timed_latencies
from cidpipe.errors import DeviceError, UsageError

_PATH_FLAGS = ("--onnx=", "--saveEngine=", "--loadEngine=", "--timingCacheFile=", "--exportTimes=")
# Sample tegrastats for exactly the lifetime of the command. Only OUR tegrastats is killed (by pid):
# `tegrastats --stop` would also stop a monitor someone else started on the board.
_RUN_WITH_TEGRASTATS = (
    'log="$1"; interval="$2"; shift 2; ts_pid=""; '
    'if command -v tegrastats >/dev/null 2>&1; then '
    'tegrastats --interval "$interval" --logfile "$log" >/dev/null 2>&1 & ts_pid=$!; fi; '
    '"$@"; status=$?; '
    'if [ -n "$ts_pid" ]; then kill "$ts_pid" 2>/dev/null; wait "$ts_pid" 2>/dev/null; fi; '
    'exit $status'
)


@dataclass
class JetsonTiming:
    """One trtexec timing run on a board, with what the board was doing meanwhile."""

    engine: str
    trtexec_log: str
    trtexec: dict[str, Any]  # cidpipe.bench.trtexec_parse.TrtexecReport as a dict
    tegrastats_log: str | None  # None when the board has no tegrastats
    tegrastats_samples: int
    average_power_w: float | None
    # Per trtexec query, i.e. per batch of the --shapes given: divide by the batch size for per image.
    energy_per_query_mj: float | None
    power_mode: str
    clocks: dict[str, Any] = field(default_factory=dict)
    board: str | None = None  # /proc/device-tree/model, e.g. "NVIDIA Jetson AGX Orin Developer Kit"
    # Per timed query (--exportTimes), None when unusable; latency_source says which the row's stats are.
    latencies_ms: list[float] | None = None
    latency_source: str = "trtexec summary"

    def energy_per_image_mj(self, batch_size: int) -> float | None:
        return None if self.energy_per_query_mj is None else self.energy_per_query_mj / max(1, batch_size)


def device_trtexec_args(trtexec_args: list[str]) -> list[str]:
    """The flags without the program name and without the path flags this module sets itself."""
    args = list(trtexec_args)
    if args and not args[0].startswith("-") and Path(args[0]).name == "trtexec":
        args = args[1:]
    for arg in args:
        if not arg.startswith("-"):
            raise UsageError(f"trtexec argument {arg!r} is not a flag; pass flags like --fp16, --shapes=...")
    return [arg for arg in args if not arg.startswith(_PATH_FLAGS)]


def find_trtexec(target: SshTarget) -> str:
    if target.device.trtexec:
        return target.device.trtexec
    found = optional_output(target, ["sh", "-c", FIND_TRTEXEC])
    if not found:
        raise DeviceError(
            f"trtexec not found on {target.device.name} (not on PATH, not at {JETPACK_TRTEXEC}): "
            "install TensorRT (JetPack) there or set trtexec: in devices.yaml"
        )
    return found.splitlines()[-1]


def engine_remote_path(device: DeviceSpec, onnx_path: Path, flags: list[str], trtexec: str) -> str:
    """Deterministic per (onnx bytes, flags, trtexec): a rebuild replaces the same file."""
    digest = hashlib.sha256(onnx_path.read_bytes())
    digest.update("\0".join([trtexec, *flags]).encode())
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", onnx_path.stem)
    return f"{device.workdir.rstrip('/')}/engines/{stem}-{digest.hexdigest()[:16]}.engine"


def _first_error_line(log: str) -> str:
    errors = [line.strip() for line in log.splitlines() if "[E]" in line or "Error" in line]
    lines = errors or [line.strip() for line in log.splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def build_engine_on_device(
    device: DeviceSpec, onnx_path: Path | str, trtexec_args: list[str], *, target: SshTarget | None = None
) -> tuple[str, str]:
    """Build a TensorRT engine on the board; returns (engine path on the device, trtexec build log)."""
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise UsageError(f"{onnx_path} does not exist; export the ONNX model first")
    own_target = target is None
    target = target or SshTarget(device)
    try:
        trtexec = find_trtexec(target)
        flags = device_trtexec_args(trtexec_args)
        engine = engine_remote_path(device, onnx_path, flags, trtexec)
        run_dir = make_run_dir(target)
        try:
            upload(target, run_dir, [(onnx_path, onnx_path.name)])
            partial = f"{run_dir}/engine.partial"  # renamed only after a successful build
            argv = [trtexec, f"--onnx={run_dir}/{onnx_path.name}", f"--saveEngine={partial}",
                    f"--timingCacheFile={device.workdir.rstrip('/')}/timing.cache", *flags]
            completed = target.run(argv, what="trtexec build")
            log = completed.stdout + completed.stderr
            if completed.returncode != 0:
                raise DeviceError(f"trtexec failed to build {onnx_path.name} on {device.name}: "
                                  f"{_first_error_line(log)}")
            target.run(["sh", "-c", 'mkdir -p -- "$(dirname -- "$2")" && mv -f -- "$1" "$2"', "sh", partial,
                        engine], check=True, what="storing the engine")
        finally:
            remove_run_dir(target, run_dir)
        return engine, log
    finally:
        if own_target:
            target.close()


def board_state(target: SshTarget) -> dict[str, Any]:
    """What the board was set to when it was measured: power mode (``nvpmodel -q``), clocks
    (``jetson_clocks --show``) and the board's name; a missing tool gives ``unknown``, never an error."""
    board = (optional_output(target, ["cat", "/proc/device-tree/model"]) or "").replace("\0", "").strip()
    return {"power_mode": parse_power_mode(optional_output(target, ["nvpmodel", "-q"])),
            "clocks": parse_clocks(optional_output(target, ["jetson_clocks", "--show"])),
            "board": board or None}  # fmt: skip


def parse_clocks(text: str | None) -> dict[str, Any]:
    """``jetson_clocks --show``: GPU/EMC frequencies and whether the GPU is pinned (min == max)."""
    if not text:
        return {"state": UNKNOWN}
    clocks: dict[str, Any] = {"raw": text}
    for unit in ("GPU", "EMC"):
        match = re.search(rf"^{unit} MinFreq=(\d+) MaxFreq=(\d+) CurrentFreq=(\d+)", text, re.MULTILINE)
        if match:
            low, high, current = (int(value) for value in match.groups())
            clocks[unit.lower()] = {"min_hz": low, "max_hz": high, "current_hz": current}
    gpu = clocks.get("gpu")
    clocks["state"] = UNKNOWN if gpu is None else ("locked" if gpu["min_hz"] == gpu["max_hz"] else "dynamic")
    return clocks


def _power(log: str | None, interval_ms: int) -> tuple[int, float | None]:
    if not log:
        return 0, None
    samples = parse_tegrastats(log, interval_ms)
    powered = [sample.input_power_mw for sample in samples if sample.input_power_mw is not None]
    return len(samples), (sum(powered) / len(powered) / 1000.0 if powered else None)


def time_engine_on_device(
    device: DeviceSpec,
    engine: str,
    trtexec_args: list[str],
    *,
    tegrastats_interval_ms: int = 100,
    target: SshTarget | None = None,
) -> JetsonTiming:
    """Time an engine already on the board (``trtexec --loadEngine``) while tegrastats samples power.

    ``average_power_w`` is the mean board input power over the trtexec run; energy per query is that power
    divided by trtexec's throughput in queries/s (one query is one batch; see energy_per_image_mj).
    """
    own_target = target is None
    target = target or SshTarget(device)
    try:
        trtexec = find_trtexec(target)
        run_dir = make_run_dir(target)
        try:
            tegrastats_file = f"{run_dir}/tegrastats.log"
            argv = ["sh", "-c", _RUN_WITH_TEGRASTATS, "sh", tegrastats_file, str(tegrastats_interval_ms),
                    trtexec, f"--loadEngine={engine}", *device_trtexec_args(trtexec_args),
                    f"--exportTimes={run_dir}/{TIMES_FILE}"]
            completed = target.run(argv, what="trtexec timing")
            log = completed.stdout + completed.stderr
            if completed.returncode != 0:
                raise DeviceError(f"trtexec failed to time {engine} on {device.name}: "
                                  f"{_first_error_line(log)}")
            present = target.run(["test", "-f", tegrastats_file]).returncode == 0
            tegrastats_log = target.read_file(tegrastats_file).decode(errors="replace") if present else None
            # A log without a performance summary is a failed run, never a row of empty "pass" numbers.
            parsed = require_performance(parse_trtexec(log), f"trtexec on {device.name}")
            latencies, source = _per_query(target, f"{run_dir}/{TIMES_FILE}", parsed)
        finally:
            remove_run_dir(target, run_dir)
        state = board_state(target)
    finally:
        if own_target:
            target.close()
    report = parsed.to_dict()
    samples, average_w = _power(tegrastats_log, tegrastats_interval_ms)
    qps = report.get("throughput_qps")
    energy = average_w * 1000.0 / qps if average_w is not None and qps else None
    return JetsonTiming(engine=engine, trtexec_log=log, trtexec=report, tegrastats_log=tegrastats_log,
                        tegrastats_samples=samples, average_power_w=average_w, energy_per_query_mj=energy,
                        power_mode=state["power_mode"], clocks=state["clocks"], board=state["board"],
                        latencies_ms=latencies, latency_source=source)


def _per_query(target: SshTarget, path: str, report: TrtexecReport) -> tuple[list[float] | None, str]:
    """trtexec's per-query latencies from the board, and which source the row's statistics come from. The
    file is sized first, so one larger than MAX_TIMES_BYTES is never transferred."""
    sized = target.run(["wc", "-c", path], what="sizing trtexec's per-query times")
    fields = sized.stdout.split()
    if sized.returncode != 0 or not fields or not fields[0].isdigit():
        return None, "trtexec summary (no --exportTimes file)"  # a trtexec too old to write it
    try:
        if int(fields[0]) > MAX_TIMES_BYTES:
            raise TimesUnusable(f"per-query times larger than {MAX_TIMES_BYTES >> 20} MiB")
        return timed_latencies(target.read_file(path), report), "trtexec --exportTimes (per query)"
    except TimesUnusable as err:
        return None, f"trtexec summary ({err})"

"""Parse trtexec's output: TensorRT version, selected device, and the performance summary.

Handles the one-line summary of TensorRT 7.2-8.4 (``Latency: min = .. ms, ..., percentile(99%) = .. ms``),
the 8.5+/10.x lines with ``percentile(90%)/(95%)/(99%)``, and the older sectioned layout
(``Host Latency`` followed by ``min: X ms (end to end Y ms)`` lines). Lines starting with ``#`` are
comments (fixture provenance), and a stat that is garbled in the log is simply left out.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

from cidpipe.errors import DeviceError

_PREFIX = re.compile(r"^\[[^\]]*\]\s*\[[A-Z]\]\s?")  # "[03/11/2022-14:57:03] [I] "
_STAT_LINE = re.compile(r"^(?P<label>[A-Za-z0-9][A-Za-z0-9 \-]*?):\s+(?P<body>min\s*=?.*)$")
_STAT = re.compile(r"(min|max|mean|median|percentile\((\d+(?:\.\d+)?)%\))\s*=?\s*([-+0-9.eE]+)\s*ms\b")
_LEGACY_STAT = re.compile(
    r"^(min|max|mean|median|percentile):\s*([-+0-9.eE]+)\s*ms(?:\s+at\s+(\d+(?:\.\d+)?)%)?"
    r"(?:\s*\(end to end\s*([-+0-9.eE]+)\s*ms)?"
)
_LABELS = {
    "Latency": "latency",
    "Host Latency": "latency",
    "End-to-End Host Latency": "end_to_end_latency",
    "Enqueue Time": "enqueue_time",
    "H2D Latency": "h2d_latency",
    "GPU Compute Time": "gpu_compute_time",
    "GPU Compute": "gpu_compute_time",
    "D2H Latency": "d2h_latency",
}


@dataclass
class TrtexecReport:
    tensorrt_version: str | None = None
    device_name: str | None = None
    compute_capability: str | None = None
    throughput_qps: float | None = None
    total_host_walltime_s: float | None = None
    total_gpu_compute_time_s: float | None = None
    # "Warmup completed W queries over ..." and "Timing trace has M queries over ...": how to line up
    # the per-query --exportTimes file with the summary (cidpipe/bench/trtexec_times.py)
    warmup_queries: int | None = None
    timed_queries: int | None = None
    # each: {"min_ms", "max_ms", "mean_ms", "median_ms", "p90_ms", "p95_ms", "p99_ms"} as present
    stats: dict[str, dict[str, float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _stat_key(name: str, percent: str | None) -> str:
    if percent is not None:
        return f"p{percent.rstrip('0').rstrip('.') if '.' in percent else percent}_ms"
    return f"{name}_ms"


def _version_from_banner(code: str) -> str:
    """``[TensorRT v8400]`` -> 8.4.0, ``[TensorRT v100200]`` -> 10.2.0 (major*10000 from 10 on)."""
    number = int(code)
    if number >= 10000:
        return f"{number // 10000}.{number % 10000 // 100}.{number % 100}"
    return f"{number // 1000}.{number % 1000 // 100}.{number % 100}"


def parse_trtexec(text: str) -> TrtexecReport:
    """Everything recognisable in a trtexec log; later summaries override earlier ones."""
    report = TrtexecReport()
    legacy_section: str | None = None
    for raw in text.splitlines():
        if raw.lstrip().startswith("#"):
            continue
        banner = re.search(r"\[TensorRT v(\d+)\]", raw)
        if banner and report.tensorrt_version is None:
            report.tensorrt_version = _version_from_banner(banner.group(1))
        line = _PREFIX.sub("", raw).strip()
        if match := re.match(r"TensorRT version:\s*([0-9][0-9.]*)", line):
            report.tensorrt_version = match.group(1)
        elif match := re.match(r"Selected Device:\s*(.+)$", line):
            report.device_name = match.group(1).strip()
        elif match := re.match(r"Compute Capability:\s*([0-9.]+)", line):
            report.compute_capability = match.group(1)
        elif match := re.match(r"Throughput:\s*([-+0-9.eE]+)\s*qps", line):
            report.throughput_qps = float(match.group(1))
        elif match := re.match(r"Warmup completed\s+(\d+)\s+queries\b", line):
            report.warmup_queries = int(match.group(1))
        elif match := re.match(r"Timing trace has\s+(\d+)\s+queries\b", line):
            report.timed_queries = int(match.group(1))
        elif match := re.match(r"Total Host Walltime:\s*([-+0-9.eE]+)\s*s\b", line):
            report.total_host_walltime_s = float(match.group(1))
        elif match := re.match(r"Total GPU Compute Time:\s*([-+0-9.eE]+)\s*s\b", line):
            report.total_gpu_compute_time_s = float(match.group(1))
        elif (match := _STAT_LINE.match(line)) and match.group("label") in _LABELS:
            values = {_stat_key(m[0].split("(")[0], m[1] or None): float(m[2]) for m in _STAT.findall(line)}
            if values:
                report.stats[_LABELS[match.group("label")]] = values
        elif line in _LABELS:  # legacy sectioned layout: a bare heading, then one stat per line
            legacy_section = _LABELS[line]
        elif legacy_section and (match := _LEGACY_STAT.match(line)):
            name, value, percent, end_to_end = match.groups()
            key = _stat_key(name, percent if name == "percentile" else None)
            report.stats.setdefault(legacy_section, {})[key] = float(value)
            if end_to_end is not None and legacy_section == "latency":
                report.stats.setdefault("end_to_end_latency", {})[key] = float(end_to_end)
        elif legacy_section and not re.match(r"(throughput|walltime):", line):
            legacy_section = None
    return report


def require_performance(report: TrtexecReport, source: str = "trtexec output") -> TrtexecReport:
    """The report, or a DeviceError when the log holds no performance summary (the run failed)."""
    timed = "latency" in report.stats or "gpu_compute_time" in report.stats
    if report.throughput_qps is None and not timed:
        raise DeviceError(
            f"no performance summary in {source}: trtexec probably failed before timing; "
            "rerun it with --verbose and read the errors above the summary"
        )
    return report

"""Parse tegrastats lines (Jetson Nano/TX2/Xavier/Orin) into samples with board input power.

Rails come as ``POM_5V_IN 2543/2543`` (Nano, TX1/TX2 JetPack 4: instant/average mW without unit),
``VDD_IN 3140/3208`` (TX2, Xavier NX) or ``VDD_IN 5039mW/5039mW`` (JetPack 5/6, Orin). The input
power of a sample is the board input rail (VDD_IN, else POM_5V_IN); boards without one (AGX Xavier,
AGX Orin) report the sum of their rails, marked ``input_rail == "sum"``. Per NVIDIA's forum answer
cited in rbonghi/jetson_stats#51, POM_5V_IN already is the total, so the sub-rails are never added to it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone

from cidpipe.errors import DeviceError

_TIMESTAMP = re.compile(r"^(\d{2}-\d{2}-\d{4} \d{2}:\d{2}:\d{2})\s+")
_RAM = re.compile(r"\bRAM (\d+)/(\d+)MB")
_GPU = re.compile(r"\bGR3D_FREQ (\d+)%")
_CPU = re.compile(r"\bCPU \[([^\]]*)\]")
# Only rail-like names, so "RAM 2020/3964MB" or "SWAP 0/1982MB" can never be taken for a rail.
_RAIL = re.compile(r"\b((?:VDD|VDDQ|POM|VIN)_[A-Z0-9_]+) (\d+)(?:mW)?/(\d+)(?:mW)?(?![0-9A-Za-z])")
_INPUT_RAILS = ("VDD_IN", "POM_5V_IN")


@dataclass
class TegraSample:
    timestamp: float | None  # seconds (UTC epoch of the printed time, or index * interval)
    input_power_mw: float | None
    input_rail: str | None  # "VDD_IN", "POM_5V_IN", "sum" or None when no rail was printed
    rails_mw: dict[str, float] = field(default_factory=dict)  # instantaneous mW per rail
    ram_used_mb: int | None = None
    ram_total_mb: int | None = None
    gpu_util_pct: int | None = None
    cpu_util_pct: list[int | None] = field(default_factory=list)  # None for an offline core


def parse_tegrastats_line(line: str, timestamp: float | None = None) -> TegraSample | None:
    """One sample, or None for a line that is not tegrastats output (blank, comment, prompt)."""
    text = line.strip()
    if not text or text.startswith("#"):
        return None
    if match := _TIMESTAMP.match(text):
        printed = datetime.strptime(match.group(1), "%m-%d-%Y %H:%M:%S").replace(tzinfo=timezone.utc)
        timestamp = printed.timestamp()
    rails = {name: float(instant) for name, instant, _average in _RAIL.findall(text)}
    ram = _RAM.search(text)
    if not rails and not ram:
        return None
    input_rail = next((name for name in _INPUT_RAILS if name in rails), None)
    if input_rail is None and rails:
        input_rail = "sum"
    power = rails.get(input_rail) if input_rail in _INPUT_RAILS else (sum(rails.values()) if rails else None)
    gpu = _GPU.search(text)
    cpus: list[int | None] = []
    if cpu := _CPU.search(text):
        for core in cpu.group(1).split(","):
            load = re.match(r"\s*(\d+)%", core)
            cpus.append(int(load.group(1)) if load else None)
    return TegraSample(
        timestamp=timestamp,
        input_power_mw=power,
        input_rail=input_rail,
        rails_mw=rails,
        ram_used_mb=int(ram.group(1)) if ram else None,
        ram_total_mb=int(ram.group(2)) if ram else None,
        gpu_util_pct=int(gpu.group(1)) if gpu else None,
        cpu_util_pct=cpus,
    )


def parse_tegrastats(text: str, interval_ms: float | None = None) -> list[TegraSample]:
    """All samples in ``text``; lines without a printed time get ``index * interval_ms`` when given."""
    samples: list[TegraSample] = []
    for line in text.splitlines():
        fallback = len(samples) * interval_ms / 1000.0 if interval_ms is not None else None
        sample = parse_tegrastats_line(line, fallback)
        if sample is not None:
            samples.append(sample)
    return samples


def average_power_and_energy(
    samples: Sequence[TegraSample], window: tuple[float, float] | None, inferences: int
) -> tuple[float, float]:
    """(average input power in W, energy per inference in mJ) over ``window`` = (start_s, end_s).

    Without a window every sample counts and the duration is the span of their timestamps. Energy is
    average power x window duration / inferences.
    """
    if inferences < 1:
        raise DeviceError(f"energy per inference needs at least one inference, got {inferences}")
    powered = [s for s in samples if s.input_power_mw is not None]
    if window is not None:
        start, end = window
        powered = [s for s in powered if s.timestamp is not None and start <= s.timestamp <= end]
        duration = end - start
    else:
        stamps = [s.timestamp for s in powered if s.timestamp is not None]
        duration = (max(stamps) - min(stamps)) if len(stamps) >= 2 else 0.0
    if not powered:
        raise DeviceError(
            "no tegrastats sample with an input power rail in the measurement window; run tegrastats "
            "with a shorter --interval or measure for longer (raise runs/min_seconds)"
        )
    if duration <= 0:
        raise DeviceError("the power measurement window has no duration; pass a (start, end) window")
    average_w = sum(s.input_power_mw for s in powered) / len(powered) / 1000.0  # type: ignore[misc]
    return average_w, average_w * duration / inferences * 1000.0

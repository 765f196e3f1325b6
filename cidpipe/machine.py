"""Facts about the machine a result was measured on, in one place: manifests, baselines, benchmarks and
the study tables all describe the host the same way."""

from __future__ import annotations

import os
import platform
import socket
import subprocess
from pathlib import Path
from typing import Any

import cidpipe


def cpu_model() -> str:
    """The CPU's name: the device runtime's reading (x86 ``model name``, ARM ``Hardware``), so a manifest,
    a baseline and a board's reply describe CPUs the same way."""
    from cidpipe_runtime.host import cpu_model as runtime_cpu_model

    return runtime_cpu_model() or platform.machine()


def x86_without_vnni(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """True on an x86 CPU (Linux /proc/cpuinfo) without VNNI int8 dot products (AVX-512 VNNI, AVX-VNNI or
    AMX): ORT's U8S8 kernels there multiply pairs into int16 with saturation, so an INT8 graph can lose
    accuracy its exact arithmetic does not (quantize.reduce_range exists for them). False elsewhere."""
    try:
        info = cpuinfo.read_text(errors="replace")
    except OSError:
        return False
    flags = next((line.partition(":")[2].split() for line in info.splitlines()
                  if line.startswith("flags")), [])
    return "avx2" in flags and not {"avx512_vnni", "avx_vnni", "amx_int8"} & set(flags)


def git_sha() -> str | None:
    root = Path(cidpipe.__file__).resolve().parent.parent
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def environment(device: str) -> dict[str, Any]:
    """What a stage manifest records about where it ran."""
    import torch

    env: dict[str, Any] = {
        "cidpipe": cidpipe.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "hostname": socket.gethostname(),
        "device": device,
        "git_sha": git_sha(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return env


def machine_line(device: str) -> str:
    """One line for a results table: CPU, cores, torch and the device (with the GPU's name)."""
    import torch

    parts = [f"CPU {cpu_model()}", f"{os.cpu_count()} cores", f"torch {torch.__version__}"]
    parts.append(f"device {device}")
    if device.startswith("cuda") and torch.cuda.is_available():
        parts.append(torch.cuda.get_device_name(torch.device(device)))
    return ", ".join(parts)

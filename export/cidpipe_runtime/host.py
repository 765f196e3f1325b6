"""What machine measured a latency: the facts that decide whether two measurements are comparable.

Read from /proc and platform only (no torch, no cidpipe), so the same code describes this machine and a
board. Anything unknown is left out rather than guessed.
"""

from __future__ import annotations

import os
import platform
import socket
from typing import Any


def _read(path: str) -> str | None:
    try:
        with open(path, "rb") as handle:
            return handle.read(65536).decode("utf-8", "replace").replace("\0", "").strip() or None
    except OSError:
        return None


def cpu_model() -> str | None:
    """``model name`` of the first CPU (x86), else ``Hardware`` / ``Model`` (ARM), else platform's."""
    info = _read("/proc/cpuinfo") or ""
    for key in ("model name", "Hardware", "Model", "cpu model"):
        for line in info.splitlines():
            name, _, value = line.partition(":")
            if name.strip() == key and value.strip():
                return " ".join(value.split())
    return platform.processor() or None


def board_model() -> str | None:
    """The device-tree model ('NVIDIA Jetson AGX Orin Developer Kit', 'Raspberry Pi 5 ...'); None on PCs."""
    return _read("/proc/device-tree/model")


def host_facts(**libraries: str | None) -> dict[str, Any]:
    """Hostname, machine, CPU model and count, board, python, numpy and the given library versions."""
    import numpy as np

    facts: dict[str, Any] = {
        "hostname": socket.gethostname(),
        "machine": platform.machine(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "board": board_model(),
        "python": platform.python_version(),
        "numpy": np.__version__,
    }
    facts.update(libraries)
    return {key: value for key, value in facts.items() if value is not None}

"""How numbers are written in gate messages, JUnit, Markdown and the report (one place, one style)."""

from __future__ import annotations

UNITS = {"%": "%", "points": "points", "ms": "ms", "MB": "MB"}


def format_value(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    if unit == "ms":
        # Sub-0.1 ms latencies (tiny models, TensorRT) need a third decimal to be told apart.
        return f"{value:.2f} ms" if abs(value) >= 0.1 else f"{value:.3f} ms"
    if unit == "MB":
        return f"{value:.3f} MB" if abs(value) < 1 else f"{value:.2f} MB"
    if unit == "%":
        return f"{value:.2f} %"
    if unit == "points":
        return f"{value:.2f} points"
    return f"{value:g}"


def compare_message(
    measured: float, allowed: float, unit: str, passed: bool, upper: bool, extra: str = ""
) -> str:
    """``measured 0.83 ms > allowed 0.80 ms (baseline 0.64 ms +25 %)``."""
    if upper:
        op = "<=" if passed else ">"
    else:
        op = ">=" if passed else "<"
    text = f"measured {format_value(measured, unit)} {op} allowed {format_value(allowed, unit)}"
    return f"{text} ({extra})" if extra else text


def bytes_to_mb(size_bytes: float) -> float:
    return size_bytes / 1_000_000

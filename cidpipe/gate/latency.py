"""Latency rows as the gate sees them: which statistic, whether the row was noisy, which host measured it.

Latency is only comparable between runs on the same hardware and software stack, so every bench row
carries ``host`` (cidpipe_runtime.host.host_facts) and a baseline stores it per entry. Accuracy does not
depend on the host and is always compared.
"""

from __future__ import annotations

import math
from typing import Any

from cidpipe.gate.numbers import compare_message, format_value
from cidpipe.gate.report import Check

# What makes two latency measurements comparable. Not the hostname: CI runners of one pool differ in
# name but not in hardware, and a laptop differs in hardware whatever it is called.
HOST_KEYS = ("machine", "cpu_model", "cpu_count", "board", "power_mode", "onnxruntime", "tensorrt", "torch")
_UNKNOWN = (None, "", "unknown")


def metric_ms(result: dict[str, Any], metric: str) -> float | None:
    value = (result.get("latency") or {}).get(f"{metric}_ms")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def ci_note(result: dict[str, Any], metric: str) -> str:
    """``95 % CI 0.24-0.26 ms`` for a p50 that has a bootstrap interval; empty otherwise."""
    latency = result.get("latency") or {}
    low, high = latency.get("p50_ci_low_ms"), latency.get("p50_ci_high_ms")
    if metric != "p50" or not isinstance(low, (int, float)) or not isinstance(high, (int, float)):
        return ""
    return f"95 % CI {format_value(float(low), 'ms')}-{format_value(float(high), 'ms')}"


def noise_note(result: dict[str, Any]) -> str | None:
    """Why the row is noisy (None when it is not marked noisy)."""
    if result.get("noisy") is not True:
        return None
    cov = (result.get("latency") or {}).get("cov")
    # Three digits: at two, a CoV just over the 0.10 threshold reads "CoV 0.10 above" it.
    shown = f"{cov:.3f}" if isinstance(cov, (int, float)) and not isinstance(cov, bool) else "unknown"
    return f"noisy row: CoV {shown} above bench.cov_warning"


def latency_check(
    name: str, kind: str, result: dict[str, Any], measured: float, allowed: float, policy: str,
    extra: str = "",
) -> Check:
    """``measured <= allowed``; when the row is noisy, flagged (policy ``flag``) or failed (``fail``)."""
    metric = kind.rsplit(".", 1)[-1]
    details = "; ".join(part for part in (extra, ci_note(result, metric)) if part)
    passed = measured <= allowed
    message = compare_message(measured, allowed, "ms", passed, True, details)
    noise = noise_note(result)
    if noise is not None:
        if policy == "fail":
            passed = False
            message = f"{noise} (gate.noisy_latency: fail; rerun on a quiet machine): {message}"
        else:
            message = f"{message}; {noise}"
    return Check(name, kind, passed, message, measured, allowed, "ms", noisy=noise is not None)


def clean_host(host: Any) -> dict[str, str | int] | None:
    """The comparable facts of a row's ``host`` (strings / ints only, bounded); None when there are none."""
    if not isinstance(host, dict):
        return None
    clean: dict[str, str | int] = {}
    for key in HOST_KEYS:
        value = host.get(key)
        if isinstance(value, bool) or value in _UNKNOWN:
            continue
        if isinstance(value, int):
            clean[key] = value
        elif isinstance(value, str):
            clean[key] = value[:200]
    return clean or None


def host_difference(baseline_host: Any, run_host: Any) -> str | None:
    """Why the two hosts' latencies are not comparable, or None when they are.

    A fact known on only one side does not count as a difference; no host at all on a side does (a
    baseline recorded before hosts were stored cannot vouch for its hardware).
    """
    base, run = clean_host(baseline_host), clean_host(run_host)
    if base is None:
        return ("the baseline records no host for this row; record the baseline again "
                "(cidpipe gate --save-baseline)")
    if run is None:
        return "this run's row records no host; bench it again with this cidpipe"
    differences = [
        f"{key} {run[key]!r} vs baseline {base[key]!r}" for key in HOST_KEYS if key in base and key in run
        and base[key] != run[key]
    ]
    if not differences:
        return None
    return (f"measured on another host ({'; '.join(differences[:3])}); latency is compared only on the "
            "host the baseline was recorded on (accuracy still is compared): record a baseline on this host")

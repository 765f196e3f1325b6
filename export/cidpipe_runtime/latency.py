"""The one latency protocol used for every artifact, locally and on a target device.

Warm-up runs until BOTH a run count and a wall time are reached (first calls pay for lazy
allocation, JIT/compile and clock ramp-up), then timing runs until BOTH ``runs`` iterations and
``min_seconds`` have passed. Each iteration is timed with ``time.perf_counter_ns``; for an
asynchronous device ``sync`` is called before the clock is read so the kernel time is included.

The median comes with a 95 % percentile-bootstrap confidence interval (``p50_ci_low_ms`` ..
``p50_ci_high_ms``) computed from the per-iteration times with a fixed seed, so the same timings always
give the same interval; the coefficient of variation (``cov``) says whether the machine was quiet.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence

STAT_KEYS = ("runs", "mean_ms", "p50_ms", "p90_ms", "p99_ms", "min_ms", "max_ms", "std_ms", "cov",
             "p50_ci_low_ms", "p50_ci_high_ms")
CI_LEVEL = 0.95
BOOTSTRAP_SEED = 0
BOOTSTRAP_RESAMPLES = 1000
# Resamples x timings drawn at most, so the interval stays cheap for long runs of a fast model: 10^5
# iterations get 100 resamples (the interval is then very narrow anyway), a few thousand get 1000.
_BOOTSTRAP_BUDGET = 10_000_000
_MIN_RESAMPLES = 100


def _percentile(sorted_values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default), without needing numpy."""
    if len(sorted_values) == 1:
        return sorted_values[0]
    position = (len(sorted_values) - 1) * q / 100.0
    low = int(math.floor(position))
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (position - low)


def median_ci(
    times_ms: Sequence[float], level: float = CI_LEVEL, seed: int = BOOTSTRAP_SEED
) -> tuple[float, float]:
    """Percentile-bootstrap confidence interval of the median of ``times_ms`` (deterministic: seeded)."""
    import numpy as np  # the runtime's one dependency; imported here so summarize's callers need no numpy

    values = np.asarray(times_ms, dtype=np.float64)
    if values.size < 2:
        return float(values[0]), float(values[0])
    resamples = max(_MIN_RESAMPLES, min(BOOTSTRAP_RESAMPLES, _BOOTSTRAP_BUDGET // values.size))
    rng = np.random.default_rng(seed)
    medians = np.empty(resamples)
    chunk = max(1, 2_000_000 // values.size)  # at most ~16 MB of indices at a time
    for start in range(0, resamples, chunk):
        stop = min(start + chunk, resamples)
        picks = rng.integers(0, values.size, size=(stop - start, values.size))
        medians[start:stop] = np.median(values[picks], axis=1)
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(medians, [tail, 100.0 - tail])
    return float(low), float(high)


def summarize(times_ms: list[float]) -> dict[str, float]:
    """Stats of per-iteration times in milliseconds (population std; cov = std / mean; p50 CI)."""
    if not times_ms:
        raise ValueError("no timed iterations to summarize")
    ordered = sorted(times_ms)
    count = len(ordered)
    mean = sum(ordered) / count
    std = math.sqrt(sum((t - mean) ** 2 for t in ordered) / count)
    ci_low, ci_high = median_ci(ordered)
    return {
        "runs": count,
        "mean_ms": mean,
        "p50_ms": _percentile(ordered, 50),
        "p90_ms": _percentile(ordered, 90),
        "p99_ms": _percentile(ordered, 99),
        "min_ms": ordered[0],
        "max_ms": ordered[-1],
        "std_ms": std,
        "cov": std / mean if mean > 0 else 0.0,
        "p50_ci_low_ms": ci_low,
        "p50_ci_high_ms": ci_high,
    }


def measure_latency(
    run_once: Callable[[], None],
    *,
    warmup_runs: int,
    warmup_seconds: float,
    runs: int,
    min_seconds: float,
    sync: Callable[[], None] | None = None,
) -> dict[str, float]:
    """Time ``run_once`` with the cidpipe protocol; returns the :data:`STAT_KEYS` dict."""
    if runs < 1:
        raise ValueError("runs must be >= 1")
    if warmup_runs < 0 or warmup_seconds < 0 or min_seconds < 0:
        raise ValueError("warm-up runs/seconds and min_seconds must be >= 0")
    clock = time.perf_counter_ns

    done = 0
    start = clock()
    while done < warmup_runs or (clock() - start) < warmup_seconds * 1e9:
        run_once()
        if sync is not None:
            sync()
        done += 1

    times_ms: list[float] = []
    timed_start = clock()
    while len(times_ms) < runs or (clock() - timed_start) < min_seconds * 1e9:
        begin = clock()
        run_once()
        if sync is not None:
            sync()
        times_ms.append((clock() - begin) / 1e6)
    return summarize(times_ms)


def is_noisy(stats: dict[str, float], threshold: float) -> bool:
    """True when the coefficient of variation exceeds ``threshold`` (bench.cov_warning)."""
    cov = stats.get("cov")
    if isinstance(cov, bool) or not isinstance(cov, (int, float)) or not math.isfinite(cov):
        return False
    return cov > threshold


def high_cov_warning(stats: dict[str, float], threshold: float) -> str | None:
    """A one-line warning when the run-to-run variation is too high to trust the median."""
    cov = float(stats.get("cov") or 0.0)
    if is_noisy(stats, threshold):
        return (
            f"latency coefficient of variation {cov:.3f} exceeds {threshold:g} "
            f"(p50 {stats['p50_ms']:.3f} ms, p99 {stats['p99_ms']:.3f} ms): the machine is noisy; "
            "close other workloads, pin CPU frequency or raise --runs/--min-seconds"
        )
    return None

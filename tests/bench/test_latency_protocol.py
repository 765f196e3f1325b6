"""The latency protocol on synthetic workloads (sleep-based: tolerances are loose, the machine is shared)."""

from __future__ import annotations

import time

import pytest
from cidpipe_runtime.latency import STAT_KEYS, high_cov_warning, measure_latency, summarize


def test_sleep_median_close_to_sleep_time():
    stats = measure_latency(
        lambda: time.sleep(0.005), warmup_runs=2, warmup_seconds=0, runs=20, min_seconds=0
    )
    assert set(stats) == set(STAT_KEYS)
    assert stats["runs"] == 20
    # sleep never returns early; scheduling noise only adds time
    assert 5.0 <= stats["p50_ms"] < 5.0 * 3
    assert stats["min_ms"] >= 5.0


def test_warmup_by_count_and_time_then_runs_and_min_seconds():
    calls: list[float] = []
    start = time.perf_counter()
    stats = measure_latency(
        lambda: calls.append(time.perf_counter()),
        warmup_runs=3,
        warmup_seconds=0.05,
        runs=5,
        min_seconds=0.05,
    )
    finished = time.perf_counter()
    warmup_calls = len(calls) - stats["runs"]
    first_timed = calls[warmup_calls]
    assert warmup_calls >= 3
    assert first_timed - start >= 0.05  # timing starts only after warmup_seconds of warm-up
    assert stats["runs"] > 5  # min_seconds of no-op calls needs far more than 5 runs
    assert finished - first_timed >= 0.05 * 0.95  # the timed phase lasted min_seconds


def test_sync_is_called_before_each_clock_read():
    events: list[str] = []
    measure_latency(
        lambda: events.append("run"),
        warmup_runs=1,
        warmup_seconds=0,
        runs=3,
        min_seconds=0,
        sync=lambda: events.append("sync"),
    )
    assert events == ["run", "sync"] * 4


def test_summarize_exact_values():
    stats = summarize([1.0, 2.0, 3.0, 4.0])
    assert stats["mean_ms"] == 2.5 and stats["p50_ms"] == 2.5
    assert stats["p90_ms"] == pytest.approx(3.7) and stats["p99_ms"] == pytest.approx(3.97)
    assert stats["std_ms"] == pytest.approx(1.118033988749895)
    assert stats["cov"] == pytest.approx(1.118033988749895 / 2.5)


def test_high_cov_warning():
    noisy = summarize([1.0, 1.0, 1.0, 10.0])
    calm = summarize([1.0, 1.01, 0.99, 1.0])
    assert "coefficient of variation" in high_cov_warning(noisy, 0.1)
    assert high_cov_warning(calm, 0.1) is None


def test_bad_arguments_raise():
    with pytest.raises(ValueError):
        measure_latency(lambda: None, warmup_runs=0, warmup_seconds=0, runs=0, min_seconds=0)


def test_median_interval_is_seeded_bounded_and_brackets_the_median():
    from cidpipe_runtime.latency import median_ci

    times = [1.0 + 0.01 * (i % 7) for i in range(200)] + [9.0] * 5
    stats = summarize(times)
    assert stats["p50_ci_low_ms"] <= stats["p50_ms"] <= stats["p50_ci_high_ms"]
    assert stats["p50_ci_high_ms"] < 2.0  # a few 9 ms outliers move the mean, not the median's interval
    assert summarize(times) == stats  # seeded: reruns on the same timings give the same interval
    assert median_ci([3.0]) == (3.0, 3.0)
    wide, narrow = median_ci(times, level=0.99), median_ci(times, level=0.5)
    assert wide[0] <= narrow[0] <= narrow[1] <= wide[1]


def test_is_noisy_ignores_missing_and_non_numbers():
    from cidpipe_runtime.latency import is_noisy

    assert is_noisy({"cov": 0.3}, 0.1) and not is_noisy({"cov": 0.05}, 0.1)
    for unusable in ({}, {"cov": True}, {"cov": float("nan")}, {"cov": None}):
        assert not is_noisy(unusable, 0.1)

"""Noise-aware rows: p50 with its bootstrap interval, CoV, ``noisy``, host, per-artifact peak memory.

The noise is real, not a number written into a row: the "spiky" artifact is a torch module whose every
fourth forward call sleeps 20 ms, benched through the real local path (bench_local -> TorchBackend ->
measure_latency's perf_counter_ns), so its timings really vary. The steady one sleeps 2 ms every call:
scheduler jitter on a shared machine stays far below the CoV threshold used here (1.0), while the spiky
one's CoV is about 1.7 by construction.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from cidpipe.bench.config import BenchConfig
from cidpipe.bench.local import bench_local
from cidpipe.bench.result import ArtifactSpec, BenchResult
from cidpipe.bench.table import result_notes, results_to_json

FAST = {"warmup_runs": 1, "warmup_seconds": 0.0, "min_seconds": 0.0, "threads": 1}


class _Sleepy(torch.nn.Module):
    """``inner`` plus a sleep: ``every``-th call sleeps ``spike_s``, every call sleeps ``base_s``."""

    def __init__(self, inner: torch.nn.Module, base_s: float, spike_s: float = 0.0, every: int = 4) -> None:
        super().__init__()
        self.inner, self.base_s, self.spike_s, self.every, self.calls = inner, base_s, spike_s, every, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        time.sleep(self.base_s + (self.spike_s if self.calls % self.every == 0 else 0.0))
        return self.inner(x)


class _Hungry(torch.nn.Module):
    """Touches ``mib`` MiB on every call (freed again): a model with a large activation peak."""

    def __init__(self, inner: torch.nn.Module, mib: int) -> None:
        super().__init__()
        self.inner, self.mib = inner, mib

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scratch = np.ones(self.mib << 18, dtype=np.float32)  # mib MiB, written so it is resident
        del scratch
        return self.inner(x)


@pytest.fixture(scope="module")
def noisy_rows(classifier, eval_set) -> list[BenchResult]:
    artifacts = [
        ArtifactSpec("steady.pt", "torch", module=_Sleepy(classifier.torch_module(), 0.002)),
        ArtifactSpec("spiky.pt", "torch-spiky", module=_Sleepy(classifier.torch_module(), 0.0, 0.02)),
    ]
    cfg = BenchConfig(backends=["torch"], batch_sizes=[1], runs=40, cov_warning=1.0, **FAST)
    return bench_local(artifacts, eval_set["x"][:8], eval_set["y"][:8], None, cfg)


def test_the_noisy_row_is_marked_and_stored(noisy_rows):
    steady, spiky = noisy_rows
    assert spiky.latency["cov"] > 1.0 and spiky.noisy is True
    assert steady.latency["cov"] < 1.0 and steady.noisy is False
    stored = {row["artifact"]: row for row in results_to_json(noisy_rows)}
    assert stored["spiky.pt"]["noisy"] is True and stored["steady.pt"]["noisy"] is False
    assert BenchResult.from_dict(stored["spiky.pt"]).noisy is True
    [note] = [note for note in result_notes(noisy_rows, 1.0) if "coefficient of variation" in note]
    assert note.startswith("spiky.pt")


def test_p50_has_a_deterministic_bootstrap_interval(noisy_rows):
    from cidpipe_runtime.latency import median_ci

    for row in noisy_rows:
        lat = row.latency
        assert lat["p50_ci_low_ms"] <= lat["p50_ms"] <= lat["p50_ci_high_ms"]
    times = [1.0, 1.1, 0.9, 1.05, 5.0, 1.0, 0.95, 1.2]
    assert median_ci(times) == median_ci(list(times))  # seeded: the same timings, the same interval


def test_rows_record_the_host_and_role(noisy_rows):
    for row in noisy_rows:
        assert row.role == "student"
        assert row.host["cpu_count"] >= 1 and row.host["machine"] and row.host["torch"] == torch.__version__


def test_peak_memory_is_per_artifact(classifier, eval_set):
    """The hungry artifact runs first; with a process-wide ru_maxrss the small one would inherit its peak."""
    from cidpipe_runtime.memory import PeakMemory

    if PeakMemory().start().scope != "artifact":
        pytest.skip("this kernel does not let a process reset its peak RSS (/proc/self/clear_refs)")
    artifacts = [
        ArtifactSpec("hungry.pt", "torch", module=_Hungry(classifier.torch_module(), 256)),
        ArtifactSpec("small.pt", "torch-small", module=classifier.torch_module()),
    ]
    cfg = BenchConfig(backends=["torch"], batch_sizes=[1], runs=3, **FAST)
    hungry, small = bench_local(artifacts, eval_set["x"][:4], eval_set["y"][:4], None, cfg)
    assert hungry.peak_mem_bytes - small.peak_mem_bytes > 128 << 20
    assert hungry.extra["peak_mem"]["scope"] == "artifact"
    assert hungry.extra["peak_mem"]["added_bytes"] > 200 << 20

"""Self-check of the latency protocol: its median against a plain ``timeit`` loop of the same call.

Both timers run interleaved in one process, alternating which goes first each round (A B, B A, ...), so
slow drifts of a shared machine (frequency, other jobs) hit both equally. The ratio is the median of the
per-round ratios: each round's two medians are taken back to back, so a burst of load from another job
shifts one pair, not the verdict (a ratio of medians taken over all rounds let two loaded rounds decide).
"""

from __future__ import annotations

import statistics
import timeit
from collections.abc import Callable
from dataclasses import dataclass

from cidpipe_runtime.latency import measure_latency


@dataclass
class TimerComparison:
    protocol_median_ms: float
    timeit_median_ms: float
    rounds: int
    runs_per_round: int
    round_ratios: tuple[float, ...]

    @property
    def ratio(self) -> float:
        """Median over rounds of protocol median / timeit median, each pair measured back to back."""
        return statistics.median(self.round_ratios)


def compare_with_timeit(
    run_once: Callable[[], object], rounds: int = 5, runs: int = 200, warmup_runs: int = 20
) -> TimerComparison:
    """Median latency of ``run_once`` by measure_latency and by timeit at the same run count."""
    protocol: list[float] = []
    plain: list[float] = []

    def with_protocol() -> None:
        stats = measure_latency(
            run_once, warmup_runs=warmup_runs, warmup_seconds=0.0, runs=runs, min_seconds=0.0
        )
        protocol.append(stats["p50_ms"])

    def with_timeit() -> None:
        timer = timeit.Timer(run_once)
        timer.repeat(repeat=warmup_runs, number=1)  # same warm-up as the protocol
        plain.append(statistics.median(timer.repeat(repeat=runs, number=1)) * 1000.0)

    for index in range(rounds):
        order = (with_protocol, with_timeit) if index % 2 == 0 else (with_timeit, with_protocol)
        for measure in order:
            measure()
    ratios = tuple(mine / theirs for mine, theirs in zip(protocol, plain, strict=True))
    return TimerComparison(statistics.median(protocol), statistics.median(plain), rounds, runs, ratios)

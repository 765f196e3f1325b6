"""Mean ± sample standard deviation over seeds, and paired differences between two methods."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and *sample* standard deviation (n - 1); the std of a single value is 0."""
    if not values:
        return math.nan, math.nan
    mean = statistics.fmean(values)
    return mean, statistics.stdev(values) if len(values) > 1 else 0.0


def format_mean_std(values: Sequence[float], digits: int = 2) -> str:
    if not values:
        return "—"
    mean, std = mean_std(values)
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if len(values) > 1 else f"{mean:.{digits}f}"


def paired_differences(
    candidate: dict[int, float], baseline: dict[int, float]
) -> list[float]:
    """candidate - baseline for every seed both have; same seed = same student init and data order."""
    return [candidate[seed] - baseline[seed] for seed in sorted(candidate) if seed in baseline]


def exceeds_noise(differences: Sequence[float], confidence: float = 0.95) -> bool:
    """Paired two-sided t-test: is the mean difference beyond the seed-to-seed spread?

    |mean| > t_{(1+confidence)/2, n-1} * std / sqrt(n). With three seeds t is 4.30, so only a difference
    that is large against its own spread passes; fewer than two pairs never pass.
    """
    if len(differences) < 2:
        return False
    from scipy.stats import t as student_t

    mean, std = mean_std(differences)
    if std == 0.0:
        return mean != 0.0
    critical = float(student_t.ppf((1.0 + confidence) / 2.0, len(differences) - 1))
    return abs(mean) > critical * std / math.sqrt(len(differences))

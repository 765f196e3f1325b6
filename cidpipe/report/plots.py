"""Report figures written as PNG (matplotlib's Agg canvas, no pyplot state).

The figures themselves live in plots_latency.py (accuracy versus per-image latency) and plots_training.py
(training curves); this module turns them into the bytes the report embeds.
"""

from __future__ import annotations

import io
from pathlib import Path

from matplotlib.figure import Figure

from cidpipe.atomic import atomic_write_bytes
from cidpipe.gate.rundir import RunData
from cidpipe.report.plots_latency import (
    DEFAULT_LATENCY,
    LATENCY_KEYS,
    LatencyPoint,
    accuracy_latency_figure,
    latency_points,
    pareto_front,
)
from cidpipe.report.plots_training import training_curves_figure

__all__ = [
    "DEFAULT_LATENCY", "LATENCY_KEYS", "LatencyPoint", "accuracy_latency_figure", "latency_points",
    "pareto_front", "plot_accuracy_latency", "plot_training_curves", "training_curves_figure",
]  # fmt: skip


def _png(figure: Figure, path: Path) -> bytes:
    buffer = io.BytesIO()
    # "tight" only grows or crops the canvas (legends under the panels are never cut off); the axes keep
    # their positions, so the numbers placed beside the points stay where they were placed.
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight", pad_inches=0.15)
    data = buffer.getvalue()
    atomic_write_bytes(path, data)
    return data


def plot_accuracy_latency(
    runs: list[RunData], labels: list[str], path: Path, latency: str = DEFAULT_LATENCY
) -> bytes | None:
    """Write the accuracy-versus-latency PNG to ``path``; None when no run has a timed, passing row."""
    built = accuracy_latency_figure(runs, labels, latency)
    return None if built is None else _png(built[0], path)


def plot_training_curves(run: RunData, path: Path) -> bytes | None:
    """Write the training-curves PNG to ``path``; None when neither stage logged a history."""
    figure = training_curves_figure(run)
    return None if figure is None else _png(figure, path)

"""Report figures (matplotlib's Agg canvas, no pyplot state): training curves and accuracy vs latency."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from cidpipe.atomic import atomic_write_bytes
from cidpipe.gate.rundir import RunData, result_subject

STAGE_COLOURS = {"teacher": "#4c72b0", "student": "#dd8452"}
RUN_COLOURS = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860"]
LATENCY_KEYS = {"p50": "p50_ms", "p99": "p99_ms"}


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the (latency, top-1) points no other point beats, ordered by latency.

    A point is dominated when another is at least as fast and at least as accurate and strictly better in
    one of the two. Of identical points only the first is kept.
    """
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1], i))
    front: list[int] = []
    best_top1 = float("-inf")
    for index in order:
        if points[index][1] > best_top1:
            front.append(index)
            best_top1 = points[index][1]
    return front


def latency_points(run: RunData, latency: str = "p99") -> list[tuple[float, float, str]]:
    """(latency ms, top-1 %, label) for every passing artifact x device x batch size of ``run``."""
    key = LATENCY_KEYS[latency]
    points = []
    for result in run.results:
        value = (result.get("latency") or {}).get(key)
        if result.get("status") == "pass" and value is not None and result.get("top1") is not None:
            points.append((float(value), float(result["top1"]), result_subject(result)))
    return points


def _png(figure: Figure, path: Path) -> bytes:
    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    data = buffer.getvalue()
    atomic_write_bytes(path, data)
    return data


def plot_accuracy_latency(
    runs: list[RunData], labels: list[str], path: Path, latency: str = "p99"
) -> bytes | None:
    """One point per artifact x device x batch size; each run's Pareto front as a step line."""
    series = [(label, latency_points(run, latency)) for run, label in zip(runs, labels, strict=True)]
    if not any(points for _, points in series):
        return None
    figure = Figure(figsize=(8.5, 4.6))
    axes = figure.add_subplot()
    all_x = [x for _, points in series for x, _, _ in points]
    for number, (label, points) in enumerate(series):
        if not points:
            continue
        colour = RUN_COLOURS[number % len(RUN_COLOURS)]
        front = pareto_front([(x, y) for x, y, _ in points])
        axes.scatter([p[0] for p in points], [p[1] for p in points], s=36, color=colour, alpha=0.55,
                     label=f"{label}")  # fmt: skip
        front_x, front_y = [points[i][0] for i in front], [points[i][1] for i in front]
        axes.step(front_x, front_y, where="post", color=colour, linewidth=1.6, linestyle="--")
        axes.scatter(front_x, front_y, s=90, facecolors="none", edgecolors=colour, linewidths=2,
                     label=f"{label}: Pareto front")  # fmt: skip
        for x, y, name in points:
            text = name if len(series) == 1 else f"{label}: {name}"
            axes.annotate(text, (x, y), textcoords="offset points", xytext=(5, 4), fontsize=7, color="#333")
    if max(all_x) / max(min(all_x), 1e-9) > 20:
        axes.set_xscale("log")  # TensorRT and PyTorch latencies can differ by orders of magnitude
    axes.set_xlabel(f"{latency} latency (ms, lower is better)")
    axes.set_ylabel("test top-1 (%)")
    axes.set_title("Accuracy versus latency")
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=8, loc="lower right")
    return _png(figure, path)


def plot_training_curves(run: RunData, path: Path) -> bytes | None:
    """Training loss and validation top-1 per epoch for the teacher and the student."""
    histories = {stage: run.metrics(stage).get("history") or [] for stage in ("teacher", "student")}
    if not any(histories.values()):
        return None
    figure = Figure(figsize=(9, 3.4))
    loss_axes, top1_axes = figure.subplots(1, 2)
    for stage, history in histories.items():
        if not history:
            continue
        epochs = [entry.get("epoch", index) for index, entry in enumerate(history)]
        colour = STAGE_COLOURS[stage]
        loss = [entry.get("train_loss") for entry in history]
        loss_axes.plot(epochs, loss, marker="o", markersize=3, color=colour, label=f"{stage} train loss")
        val = [entry.get("val_top1") for entry in history]
        top1_axes.plot(epochs, val, marker="o", markersize=3, color=colour, label=f"{stage} val top-1")
        train = [entry.get("train_top1") for entry in history]
        if any(value is not None for value in train):
            top1_axes.plot(epochs, train, linestyle=":", color=colour, label=f"{stage} train top-1")
    loss_axes.set_title("Training loss")
    loss_axes.set_xlabel("epoch")
    top1_axes.set_title("Top-1 (%)")
    top1_axes.set_xlabel("epoch")
    for axes in (loss_axes, top1_axes):
        axes.grid(True, alpha=0.3)
        axes.legend(fontsize=8)
    figure.suptitle(f"Training curves: {run.name}", fontsize=10)
    return _png(figure, path)

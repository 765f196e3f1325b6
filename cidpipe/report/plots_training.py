"""Training curves: the teacher's cross-entropy, the student's loss parts, and top-1 per epoch.

The teacher and the student minimise different objectives (CE versus e.g. CE + KD + CID's sample and class
terms), so their losses get separate panels; a shared axis would compare numbers that mean different things.
"""

from __future__ import annotations

import math
from typing import Any

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from cidpipe.gate.rundir import RunData
from cidpipe.report.plots_latency import ROLE_COLOURS, accuracy_limits

PART_ORDER = ("ce", "kd", "sample", "class")  # the task loss first, then what distillation adds
PART_COLOURS = ["#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c", "#ccb974", "#64b5cd"]


def training_curves_figure(run: RunData) -> Figure | None:
    """Three panels (teacher CE, student loss parts, top-1); None when neither stage has a history."""
    teacher, student = (run.metrics(stage).get("history") or [] for stage in ("teacher", "student"))
    if not teacher and not student:
        return None
    figure = Figure(figsize=(11, 3.8))  # about the page's width: text is not shrunk
    FigureCanvasAgg(figure)
    teacher_axes, student_axes, top1_axes = figure.subplots(1, 3)
    _teacher_loss(teacher_axes, teacher)
    student_config = (run.manifests.get("student") or {}).get("config") or {}
    _student_loss(student_axes, student, student_config)
    _top1(top1_axes, {"teacher": teacher, "student": student})
    for axes in (teacher_axes, student_axes, top1_axes):
        axes.set_xlabel("epoch", fontsize=8)
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.tick_params(labelsize=7)
        axes.grid(True, alpha=0.3)
    figure.suptitle(f"Training curves: {run.name}", fontsize=10)
    figure.subplots_adjust(left=0.055, right=0.99, top=0.86, bottom=0.27, wspace=0.25)
    return figure


def series(history: list[dict[str, Any]], read) -> tuple[list[float], list[float]]:
    """(epochs, values) with NaN where an epoch lacks the value, so the line shows a gap, not a fake point.

    Epochs are counted from 1, as the console's "epoch 1/3" and the report's best epoch are (the history
    records count from 0)."""
    epochs = [float(entry.get("epoch", index)) + 1 for index, entry in enumerate(history)]
    values = [read(entry) for entry in history]
    return epochs, [math.nan if value is None else float(value) for value in values]


def part_names(history: list[dict[str, Any]]) -> list[str]:
    """Every loss part any epoch logged (CID's CE only starts after warm-up), known parts first."""
    names = list(dict.fromkeys(name for entry in history for name in entry.get("parts") or {}))
    return sorted(
        names, key=lambda name: (PART_ORDER.index(name) if name in PART_ORDER else len(PART_ORDER), name)
    )


def _teacher_loss(axes: Axes, history: list[dict[str, Any]]) -> None:
    axes.set_title("Teacher: cross-entropy (train)", fontsize=9)
    if not history:
        _empty(axes, "teacher not trained in this run")
        return
    # The teacher's loss is its CE; read the logged part, falling back to the total for older runs.
    epochs, ce = series(history, lambda e: (e.get("parts") or {}).get("ce", e.get("train_loss")))
    axes.plot(epochs, ce, marker="o", markersize=3, color=ROLE_COLOURS["teacher"], label="teacher CE")
    _legend_below(axes)


def _student_loss(axes: Axes, history: list[dict[str, Any]], config: dict[str, Any]) -> None:
    method = config.get("method")
    axes.set_title("Student: loss parts" + (f" ({method})" if method else ""), fontsize=9)
    if not history:
        _empty(axes, "student not trained in this run")
        return
    weights = config.get("method_config") or {}
    epochs, total = series(history, lambda e: e.get("train_loss"))
    axes.plot(
        epochs,
        total,
        marker="o",
        markersize=3,
        color=ROLE_COLOURS["student"],
        linewidth=2.2,
        label="total (weighted sum)",
    )
    values = [v for v in total if not math.isnan(v)]
    for number, name in enumerate(part_names(history)):
        _, part = series(history, lambda e, n=name: (e.get("parts") or {}).get(n))
        weight = weights.get(f"{name}_weight")
        label = name + (f" (weight {weight:g})" if isinstance(weight, int | float) else "")
        axes.plot(
            epochs,
            part,
            marker="o",  # visible on its own: CID's CE has a single point after a one-epoch warm-up
            markersize=3.5,
            linewidth=1.2,
            color=PART_COLOURS[number % len(PART_COLOURS)],
            label=label,
        )
        values += [v for v in part if not math.isnan(v)]
    positive = [v for v in values if v > 0]
    if positive and len(positive) == len(values) and max(positive) / min(positive) > 30:
        axes.set_yscale("log")  # CID's class term is ~100x smaller than KD; linear would flatten it to zero
    _legend_below(axes)


def _top1(axes: Axes, histories: dict[str, list[dict[str, Any]]]) -> None:
    axes.set_title("Top-1 (%): val solid, train dotted", fontsize=9)
    values: list[float] = []
    for role, history in histories.items():
        if not history:
            continue
        epochs, val = series(history, lambda e: e.get("val_top1"))
        axes.plot(epochs, val, marker="o", markersize=3, color=ROLE_COLOURS[role], label=f"{role} val")
        _, train = series(history, lambda e: e.get("train_top1"))
        if any(not math.isnan(v) for v in train):
            axes.plot(epochs, train, linestyle=":", color=ROLE_COLOURS[role], label=f"{role} train")
        values += [v for v in val + train if not math.isnan(v)]
    if values:
        axes.set_ylim(*accuracy_limits(values))
        _legend_below(axes)


def _legend_below(axes: Axes) -> None:
    # Under the panel, not in it: a legend inside covers whichever curve ends up in its corner.
    axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, fontsize=7, frameon=False)


def _empty(axes: Axes, text: str) -> None:
    axes.text(0.5, 0.5, text, ha="center", va="center", transform=axes.transAxes, fontsize=8, color="#777")

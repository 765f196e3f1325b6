"""Accuracy versus per-image latency: one panel per batch size, teacher and student, noisy rows hollow.

Per-image latency (batch latency / batch size) is what makes batch 1 and batch 32 readable, but they are
still different deployments, so each batch size gets its own panel and they never share an x axis. Points
carry a number instead of a text label: with 8+ artifacts text labels collide, numbers placed around the
marker with a small collision search stay readable, and the key under the panels names each number.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from cidpipe.gate.rundir import RunData, result_subject

LATENCY_KEYS = {"p50": "p50_ms", "p99": "p99_ms"}
DEFAULT_LATENCY = "p50"  # what a user feels; p99 of a short run is mostly noise
ROLE_COLOURS = {"teacher": "#4c72b0", "student": "#dd8452"}
ROLE_MARKERS = {"teacher": "s", "student": "o"}
RUN_COLOURS = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860"]
PANEL_COLUMNS = 3
PANEL_SIZE = (4.3, 3.5)  # inches: wide enough for a dozen numbered points
MARKER_HALF = 5.0  # points: half the marker's box, an obstacle for the numbers
TEXT_SIZE = 8


@dataclass(frozen=True)
class LatencyPoint:
    """One plotted bench row: what the figure shows, so tests can read the plotted values back."""

    run: str
    role: str
    name: str  # e.g. "onnx-int8@local"
    batch_size: int
    ms_per_image: float
    top1: float
    noisy: bool
    ci_low: float | None = None  # per-image p50 confidence interval, only when plotting p50
    ci_high: float | None = None
    number: int = 0


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


def latency_points(run: RunData, latency: str = DEFAULT_LATENCY, label: str = "") -> list[LatencyPoint]:
    """Every passing row of ``run`` (student artifacts and the teacher) as a per-image point."""
    points = []
    for row in [*run.results, *run.teacher_results]:
        point = _row_point(row, latency, label or run.name)
        if point is not None:
            points.append(point)
    return points


def _row_point(row: dict, latency: str, label: str) -> LatencyPoint | None:
    timing = row.get("latency") or {}
    value = timing.get(LATENCY_KEYS[latency])
    if row.get("status") != "pass" or value is None or row.get("top1") is None:
        return None
    batch = max(int(row.get("batch_size") or 1), 1)
    low, high = timing.get("p50_ci_low_ms"), timing.get("p50_ci_high_ms")
    with_ci = latency == "p50" and low is not None and high is not None  # the CI is of p50 only
    return LatencyPoint(
        run=label,
        role="teacher" if row.get("role") == "teacher" else "student",
        name=result_subject(row, with_batch=False),
        batch_size=batch,
        ms_per_image=float(value) / batch,
        top1=float(row["top1"]),
        noisy=bool(row.get("noisy")),
        ci_low=float(low) / batch if with_ci else None,
        ci_high=float(high) / batch if with_ci else None,
    )


def accuracy_limits(values: Sequence[float]) -> tuple[float, float]:
    """The top-1 axis: the data plus a small margin, never past 100.5 % nor below 0 %."""
    low, high = min(values), max(values)
    margin = max(0.5, 0.15 * (high - low))
    return max(0.0, low - margin), min(high + margin, 100.5)


def accuracy_latency_figure(
    runs: list[RunData], labels: list[str], latency: str = DEFAULT_LATENCY
) -> tuple[Figure, list[LatencyPoint]] | None:
    """The figure and the points it shows; None when no run has a passing, timed row."""
    points = [p for run, label in zip(runs, labels, strict=True) for p in latency_points(run, latency, label)]
    if not points:
        return None
    points = _numbered(points, labels)
    keys = _key_entries(points, several_runs=len(runs) > 1)
    batches = sorted({point.batch_size for point in points})
    figure, panels = _layout(len(batches), key_rows=math.ceil((len(keys) + 2) / PANEL_COLUMNS))
    colours = _colours(points, labels)
    limits = accuracy_limits([point.top1 for point in points])
    by_batch = [
        (axes, [p for p in points if p.batch_size == b]) for axes, b in zip(panels, batches, strict=True)
    ]
    for axes, panel_points in by_batch:
        _draw_panel(axes, panel_points, colours, latency, several_runs=len(runs) > 1)
        axes.set_ylim(*limits)
    for axes, panel_points in by_batch:  # once every panel's limits are final
        _place_numbers(axes, panel_points, colours)
    _draw_key(figure, keys, colours, latency)
    note = " (p99 of a short run is mostly noise)" if latency == "p99" else ""
    figure.suptitle(f"Top-1 versus {latency} latency per image, one panel per batch size{note}", fontsize=10)
    return figure, points


def _numbered(points: list[LatencyPoint], labels: list[str]) -> list[LatencyPoint]:
    # One number per run x role x artifact, the same in every panel; runs in order, each teacher first.
    def key(point: LatencyPoint) -> tuple[int, bool, str]:
        return labels.index(point.run), point.role != "teacher", point.name

    numbers = {subject: index + 1 for index, subject in enumerate(sorted({key(p) for p in points}))}
    return [replace(p, number=numbers[key(p)]) for p in points]


def _key_entries(points: list[LatencyPoint], several_runs: bool) -> list[tuple[int, str, str, str]]:
    """(number, text, run, role) per numbered subject, in number order."""
    entries = {}
    one_device = len({point.name.split("@")[-1] for point in points}) == 1  # then "@local" is only noise
    for point in points:
        name = point.name.rsplit("@", 1)[0] if one_device else point.name
        text = f"{point.number}  {point.role} {name}" + (f" ({point.run})" if several_runs else "")
        entries[point.number] = (point.number, text, point.run, point.role)
    return [entries[number] for number in sorted(entries)]


def _colours(points: list[LatencyPoint], labels: list[str]) -> dict[tuple[str, str], str]:
    # One run: colour tells teacher from student. Several runs: colour tells the runs apart (marker = role).
    if len(labels) == 1:
        return {(point.run, point.role): ROLE_COLOURS[point.role] for point in points}
    return {(p.run, p.role): RUN_COLOURS[labels.index(p.run) % len(RUN_COLOURS)] for p in points}


def _layout(panel_count: int, key_rows: int) -> tuple[Figure, list[Axes]]:
    columns = min(panel_count, PANEL_COLUMNS)
    rows = math.ceil(panel_count / columns)
    key_height = 0.5 + 0.2 * key_rows
    width, height = max(columns * PANEL_SIZE[0], 7.5), rows * PANEL_SIZE[1] + key_height + 0.5
    figure = Figure(figsize=(width, height))
    FigureCanvasAgg(figure)
    grid = figure.subplots(rows, columns, sharey=True, squeeze=False)
    # A fixed layout: the numbers are placed in screen space, so the axes must not move afterwards.
    figure.subplots_adjust(
        left=0.75 / width,
        right=1 - 0.2 / width,
        top=1 - 0.55 / height,
        bottom=(key_height + 0.1) / height,
        wspace=0.12,
        hspace=0.45,
    )
    panels = [axes for row in grid for axes in row]
    for spare in panels[panel_count:]:
        spare.remove()
    return figure, panels[:panel_count]


def _draw_panel(
    axes: Axes,
    points: list[LatencyPoint],
    colours: dict[tuple[str, str], str],
    latency: str,
    several_runs: bool,
) -> None:
    for point in points:
        _draw_point(axes, point, colours[(point.run, point.role)])
    for run in dict.fromkeys(point.run for point in points):
        run_points = [point for point in points if point.run == run]
        # One run: a neutral line over teacher and student points; several: each run's front in its colour.
        colour = colours[(run, run_points[0].role)] if several_runs else "#777"
        _draw_front(axes, run_points, colour)
    spread = _spread([point.ms_per_image for point in points])
    if spread > 20:
        axes.set_xscale("log")  # TensorRT and PyTorch latencies can differ by orders of magnitude
        # Plain milliseconds (0.05, 0.1, 0.2) rather than 10^-1: a reader compares numbers, not exponents.
        axes.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        axes.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        axes.xaxis.set_minor_formatter(NullFormatter())
    axes.margins(x=0.12)
    batch = points[0].batch_size
    axes.set_title(f"batch {batch}" + (f" (batch latency ÷ {batch})" if batch > 1 else ""), fontsize=9)
    axes.set_xlabel(f"{latency} ms per image (lower is better)", fontsize=8)
    if axes.get_subplotspec().is_first_col():
        axes.set_ylabel("test top-1 (%)", fontsize=8)
    axes.tick_params(labelsize=7)
    axes.grid(True, alpha=0.3)


def _spread(values: list[float]) -> float:
    return max(values) / max(min(values), 1e-9)


def _draw_point(axes: Axes, point: LatencyPoint, colour: str) -> None:
    if point.ci_low is not None and point.ci_high is not None:
        below, above = (
            max(point.ms_per_image - point.ci_low, 0.0),
            max(point.ci_high - point.ms_per_image, 0.0),
        )
        axes.errorbar(
            [point.ms_per_image],
            [point.top1],
            xerr=[[below], [above]],
            fmt="none",
            ecolor=colour,
            elinewidth=1.0,
            capsize=2.5,
            alpha=0.8,
            zorder=2,
        )
    face = "white" if point.noisy else colour  # hollow: this row's timing is not trustworthy
    collection = axes.scatter(
        [point.ms_per_image],
        [point.top1],
        s=46,
        marker=ROLE_MARKERS[point.role],
        facecolors=face,
        edgecolors=colour,
        linewidths=1.6,
        zorder=3,
    )
    collection.set_gid(f"point-{point.number}")


def _draw_front(axes: Axes, points: list[LatencyPoint], colour: str) -> None:
    front = [points[i] for i in pareto_front([(p.ms_per_image, p.top1) for p in points])]
    axes.step(
        [p.ms_per_image for p in front],
        [p.top1 for p in front],
        where="post",
        color=colour,
        linewidth=1.1,
        linestyle="--",
        alpha=0.7,
        zorder=1,
        gid="pareto",
    )


def _place_numbers(axes: Axes, points: list[LatencyPoint], colours: dict[tuple[str, str], str]) -> None:
    """Put each point's number where it covers no marker and no other number (screen space, in points)."""
    to_points = 72.0 / axes.figure.dpi
    anchors = [
        tuple(v * to_points for v in axes.transData.transform((p.ms_per_image, p.top1))) for p in points
    ]
    frame = [v * to_points for v in axes.bbox.extents]
    obstacles = [(x - MARKER_HALF, y - MARKER_HALF, x + MARKER_HALF, y + MARKER_HALF) for x, y in anchors]
    obstacles += _line_boxes(axes, points, to_points)  # a number on a CI bar or the front hides it
    for point, (x, y) in sorted(zip(points, anchors, strict=True), key=lambda item: item[1]):
        width, height = 0.62 * TEXT_SIZE * len(str(point.number)) + 2, TEXT_SIZE + 1
        dx, dy = _best_offset(x, y, width, height, obstacles, frame)
        obstacles.append((x + dx, y + dy, x + dx + width, y + dy + height))
        far = math.hypot(dx + width / 2, dy + height / 2) > 14
        colour = colours[(point.run, point.role)]
        arrow = (
            {"arrowstyle": "-", "color": colour, "linewidth": 0.6, "shrinkA": 0, "shrinkB": 4}
            if far
            else None
        )
        axes.annotate(
            str(point.number),
            (point.ms_per_image, point.top1),
            xytext=(dx, dy),
            textcoords="offset points",
            ha="left",
            va="bottom",
            fontsize=TEXT_SIZE,
            weight="bold",
            color=colour,
            arrowprops=arrow,
            gid=f"label-{point.number}",
            zorder=4,
        )


def _line_boxes(axes: Axes, points: list[LatencyPoint], to_points: float) -> list[tuple[float, ...]]:
    """Thin boxes (in points) around every CI bar and every Pareto-front segment of the panel."""

    def screen(x: float, y: float) -> tuple[float, float]:
        px, py = axes.transData.transform((x, y))
        return px * to_points, py * to_points

    segments = [((p.ci_low, p.top1), (p.ci_high, p.top1)) for p in points if p.ci_low and p.ci_high]
    for run in dict.fromkeys(point.run for point in points):
        run_points = [point for point in points if point.run == run]
        front = [run_points[i] for i in pareto_front([(p.ms_per_image, p.top1) for p in run_points])]
        for left, right in zip(front, front[1:], strict=False):  # step "post": across, then up
            segments += [
                ((left.ms_per_image, left.top1), (right.ms_per_image, left.top1)),
                ((right.ms_per_image, left.top1), (right.ms_per_image, right.top1)),
            ]
    boxes = []
    for start, end in segments:
        (x0, y0), (x1, y1) = screen(*start), screen(*end)
        boxes.append((min(x0, x1) - 1.5, min(y0, y1) - 2.5, max(x0, x1) + 1.5, max(y0, y1) + 2.5))
    return boxes


def _candidates(width: float, height: float) -> list[tuple[float, float]]:
    # Near the marker first (right, left, above, below, the diagonals), then the same ring further out.
    offsets = []
    for distance in (6.0, 13.0, 22.0, 34.0):
        offsets += [
            (distance, -height / 2),
            (-distance - width, -height / 2),
            (-width / 2, distance - 2),
            (-width / 2, -distance - height + 2),
            (distance, distance - 4),
            (-distance - width, distance - 4),
            (distance, -distance - height + 4),
            (-distance - width, -distance - height + 4),
        ]
    return offsets


def _best_offset(
    x: float, y: float, width: float, height: float, obstacles: list[tuple[float, ...]], frame: list[float]
) -> tuple[float, float]:
    best, best_cost = (6.0, -height / 2), math.inf
    for dx, dy in _candidates(width, height):
        box = (x + dx, y + dy, x + dx + width, y + dy + height)
        cost = sum(_overlap(box, other) for other in obstacles) + 4 * _outside(box, frame)
        if cost == 0:
            return dx, dy
        if cost < best_cost:
            best, best_cost = (dx, dy), cost
    return best


def _overlap(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


def _outside(box: tuple[float, ...], frame: list[float]) -> float:
    inside = _overlap(box, tuple(frame))
    return (box[2] - box[0]) * (box[3] - box[1]) - inside


def _draw_key(
    figure: Figure, keys: list[tuple[int, str, str, str]], colours: dict[tuple[str, str], str], latency: str
) -> None:
    handles = [
        Line2D(
            [],
            [],
            linestyle="none",
            marker=ROLE_MARKERS[role],
            markersize=6,
            color=colours[(run, role)],
            label=text,
        )  # fmt: skip
        for _, text, run, role in keys
    ]
    noisy = "hollow: noisy timing" + ("; bar: p50 CI" if latency == "p50" else "")
    handles += [
        Line2D([], [], linestyle="none", marker="o", markersize=6, markerfacecolor="white", color="#555",
               label=noisy),
        Line2D([], [], linestyle="--", color="#777", label="Pareto front (fastest for its top-1)"),
    ]  # fmt: skip
    figure.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, 0.01), ncol=PANEL_COLUMNS,
                  fontsize=8, frameon=False, handletextpad=0.4, columnspacing=1.6)  # fmt: skip

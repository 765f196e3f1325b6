"""The report's figures read back as a person reads them: values, panels, limits, labels, teacher, loss parts.

Most checks use the real tiny run (``real_run``: `cidpipe run` with export, INT8 and a teacher + student
bench at batch 1 and 8); the noisy/crowded cases use fake run directories with numbers chosen here.
"""

from __future__ import annotations

import math
from itertools import combinations
from pathlib import Path

import pytest
from matplotlib.axes import Axes
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure

from cidpipe.gate.rundir import load_run
from cidpipe.report import ReportConfig, write_report
from cidpipe.report.plots import accuracy_latency_figure, training_curves_figure
from tests.gate.fake_run import bench_result, write_run
from tests.report.conftest import REAL_BATCH_SIZES


def panels(figure: Figure) -> list[Axes]:
    return [axes for axes in figure.axes if axes.get_title().startswith("batch ")]


def plotted(axes: Axes) -> dict[int, tuple[float, float]]:
    """Point number -> (x, y) as drawn: the scatter offsets, not the input rows."""
    found = {}
    for collection in axes.collections:
        gid = collection.get_gid() or ""
        if gid.startswith("point-"):
            (x, y), *_ = collection.get_offsets()
            found[int(gid.removeprefix("point-"))] = (float(x), float(y))
    return found


def label_boxes(figure: Figure, axes: Axes) -> list:
    renderer = figure.canvas.get_renderer()
    return [t.get_window_extent(renderer) for t in axes.texts if (t.get_gid() or "").startswith("label-")]


def test_latency_plot_of_a_real_run_is_per_image_one_panel_per_batch(real_run: Path) -> None:
    run = load_run(real_run)
    figure, points = accuracy_latency_figure([run], [run.name])
    rows = [row for row in run.results + run.teacher_results if row["status"] == "pass"]
    assert {row["batch_size"] for row in rows} == set(REAL_BATCH_SIZES)
    axes_by_batch = {int(axes.get_title().split()[1]): axes for axes in panels(figure)}
    assert sorted(axes_by_batch) == REAL_BATCH_SIZES  # one panel per batch size, nothing else
    one, eight = axes_by_batch[1], axes_by_batch[8]
    assert not one.get_shared_x_axes().joined(one, eight)  # batch 1 and batch 8 never share an x axis
    for row in rows:  # every passing row, per image, in its own batch's panel (default: p50)
        matches = [p for p in points if p.role == row["role"] and p.name == f"{row['format']}@local"
                   and p.batch_size == row["batch_size"]]  # fmt: skip
        assert len(matches) == 1, row
        x, y = plotted(axes_by_batch[row["batch_size"]])[matches[0].number]
        assert x == pytest.approx(row["latency"]["p50_ms"] / row["batch_size"])
        assert y == pytest.approx(row["top1"])
    assert {p.role for p in points} == {"teacher", "student"}  # the teacher on the same plot
    legend = " ".join(text.get_text() for legend in figure.legends for text in legend.get_texts())
    assert "teacher torch" in legend and "student onnx-int8" in legend
    top1 = [p.top1 for p in points]
    margin = max(0.5, 0.15 * (max(top1) - min(top1)))
    for axes in panels(figure):
        low, high = axes.get_ylim()
        assert min(top1) - margin - 1e-9 <= low < min(top1)
        assert max(top1) < high <= min(max(top1) + margin, 100.5)


def test_real_run_labels_apart_and_report_defaults_to_p50(real_run: Path, tmp_path: Path) -> None:
    run = load_run(real_run)
    figure, _ = accuracy_latency_figure([run], [run.name])
    figure.canvas.draw()
    for axes in panels(figure):
        boxes = label_boxes(figure, axes)
        assert len(boxes) == len(plotted(axes))
        assert not any(a.overlaps(b) for a, b in combinations(boxes, 2))
    assert ReportConfig().latency == "p50"
    markdown = (real_run / "report" / "report.md").read_text()  # what `cidpipe run` wrote
    assert "![top-1 versus p50 latency](accuracy_latency.png)" in markdown
    for name in ("accuracy_latency.png", "curves_tiny.png"):
        assert (real_run / "report" / name).stat().st_size > 20_000
    p99 = write_report([real_run], tmp_path / "p99", html=False, latency="p99")["markdown"].read_text()
    assert "![top-1 versus p99 latency](accuracy_latency.png)" in p99  # p99 stays selectable
    figure, points = accuracy_latency_figure([run], [run.name], "p99")
    assert "p99" in figure.texts[0].get_text() and all(p.ci_low is None for p in points)
    rows = {(r["role"], r["format"], r["batch_size"]): r for r in run.results + run.teacher_results}
    for p in points:
        row = rows[(p.role, p.name.split("@")[0], p.batch_size)]
        assert p.ms_per_image == pytest.approx(row["latency"]["p99_ms"] / p.batch_size)


def test_training_curves_separate_teacher_ce_from_student_parts(real_run: Path) -> None:
    run = load_run(real_run)
    teacher_axes, student_axes, top1_axes = training_curves_figure(run).axes
    assert "Teacher" in teacher_axes.get_title() and "Student" in student_axes.get_title()
    teacher_history = run.metrics("teacher")["history"]
    (teacher_line,) = teacher_axes.get_lines()
    assert teacher_line.get_label() == "teacher CE"
    assert list(teacher_line.get_ydata()) == pytest.approx([e["parts"]["ce"] for e in teacher_history])
    # Counted from 1 as the console's "epoch 1/N" (the records count from 0).
    assert list(teacher_line.get_xdata()) == [e["epoch"] + 1 for e in teacher_history]
    assert teacher_line.get_xdata()[0] == 1
    history = run.metrics("student")["history"]
    lines = {line.get_label().split()[0]: line for line in student_axes.get_lines()}
    assert set(lines) == {"total", "ce", "kd", "sample", "class"}  # CID's parts, exactly as logged
    assert list(lines["total"].get_ydata()) == pytest.approx([e["train_loss"] for e in history])
    for part in ("kd", "sample", "class"):
        assert list(lines[part].get_ydata()) == pytest.approx([e["parts"][part] for e in history])
    ce = list(lines["ce"].get_ydata())
    assert math.isnan(ce[0]) and ce[1] == pytest.approx(history[1]["parts"]["ce"])  # no CE in the warm-up
    assert "sample (weight 10)" in [line.get_label() for line in student_axes.get_lines()]
    assert {line.get_label() for line in top1_axes.get_lines()} >= {"teacher val", "student val"}
    low, high = top1_axes.get_ylim()
    assert high <= 100.5 and low >= 0


def test_noisy_rows_are_hollow_with_their_p50_interval(tmp_path: Path) -> None:
    rows = [
        bench_result("onnx-fp32", 96.4, 0.55, p50_ms=0.40),
        bench_result("onnx-int8", 96.1, 3.76, p50_ms=0.25, noisy=True, cov=0.9),  # the noisy INT8
    ]
    run = load_run(write_run(tmp_path, results=rows))
    figure, points = accuracy_latency_figure([run], [run.name])
    (axes,) = panels(figure)
    faces = {}
    for collection in axes.collections:
        if (collection.get_gid() or "").startswith("point-"):
            faces[int(collection.get_gid()[6:])] = tuple(collection.get_facecolor()[0])
    by_name = {p.name: p for p in points}
    assert faces[by_name["onnx-int8@local"].number] == to_rgba("white")
    assert faces[by_name["onnx-fp32@local"].number] != to_rgba("white")
    int8 = by_name["onnx-int8@local"]
    assert (int8.ci_low, int8.ms_per_image, int8.ci_high) == pytest.approx((0.245, 0.25, 0.255))
    # By p50 the noisy INT8 is the fastest point and on the front; by p99 it would look 7x slower.
    assert plotted(axes)[int8.number][0] < plotted(axes)[by_name["onnx-fp32@local"].number][0]


def test_twelve_crowded_points_keep_their_numbers_apart(tmp_path: Path) -> None:
    formats = ["torch", "onnx-fp32", "onnx-int8", "onnx-fp16", "trt-fp16", "trt-int8"]
    rows = [bench_result(fmt, 96.0 + 0.01 * i, 0.50 + 0.002 * i, batch_size=batch)
            for batch in (1, 32) for i, fmt in enumerate(formats)]  # fmt: skip
    teacher = [{**row, "role": "teacher", "top1": 98.0} for row in (rows[0], rows[6])]  # one per batch
    run = load_run(write_run(tmp_path, results=rows + teacher))
    figure, points = accuracy_latency_figure([run], [run.name])
    figure.canvas.draw()
    assert len(panels(figure)) == 2 and len(points) == 14
    for axes in panels(figure):
        boxes = label_boxes(figure, axes)
        assert len(boxes) == 7 and not any(a.overlaps(b) for a, b in combinations(boxes, 2))
        low, high = axes.get_ylim()
        assert 95.0 <= low < 96.0 and 98.0 < high <= 99.0  # data ± margin, not 0..104

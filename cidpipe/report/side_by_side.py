"""Side-by-side comparison of several runs, with deltas against the first (B - A for two runs)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cidpipe.gate.numbers import bytes_to_mb
from cidpipe.gate.rundir import RunData, result_subject
from cidpipe.report.tables import DASH, Table, seed_summary


def run_labels(runs: list[RunData]) -> list[str]:
    """Run names, made unique with their parent folder when two runs share a name."""
    names = [run.name for run in runs]
    labels = []
    for run in runs:
        label = run.name if names.count(run.name) == 1 else f"{run.path.parent.name}/{run.name}"
        labels.append(label if label not in labels else f"{label} #{len(labels) + 1}")
    return labels


def _top1(run: RunData, stage: str, key: str) -> float | None:
    summary = seed_summary(run.metrics(stage)).get(key)
    if summary is not None:
        return summary[0]  # the mean over seeds is the number to compare
    value = run.metrics(stage).get(key)
    return None if value is None else float(value)


def _result_value(run: RunData, subject: str, read: Callable[[dict[str, Any]], Any]) -> float | None:
    for result in run.results:
        if result_subject(result) == subject and result.get("status") == "pass":
            value = read(result)
            return None if value is None else float(value)
    return None


def _metrics(runs: list[RunData]) -> list[tuple[str, int, Callable[[RunData], float | None]]]:
    """(label, decimals, getter) for every number worth comparing, in reading order."""
    rows: list[tuple[str, int, Callable[[RunData], float | None]]] = [
        ("teacher test top-1 %", 2, lambda run: _top1(run, "teacher", "test_top1")),
        ("student val top-1 %", 2, lambda run: _top1(run, "student", "val_top1")),
        ("student test top-1 %", 2, lambda run: _top1(run, "student", "test_top1")),
        ("student params", 0, lambda run: run.metrics("student").get("params")),
    ]
    subjects: list[str] = []
    for run in runs:
        for result in run.results:
            if result_subject(result) not in subjects:
                subjects.append(result_subject(result))
    for subject in subjects:
        rows += [
            (f"{subject} top-1 %", 2, lambda run, s=subject: _result_value(run, s, lambda r: r.get("top1"))),
            (f"{subject} p50 ms", 3, lambda run, s=subject: _result_value(run, s, _latency("p50_ms"))),
            (f"{subject} p99 ms", 3, lambda run, s=subject: _result_value(run, s, _latency("p99_ms"))),
            (f"{subject} throughput img/s", 0, lambda run, s=subject: _result_value(run, s, _throughput)),
            (f"{subject} size MB", 3, lambda run, s=subject: _result_value(run, s, _size_mb)),
        ]
    return rows


def _latency(key: str) -> Callable[[dict[str, Any]], Any]:
    return lambda result: (result.get("latency") or {}).get(key)


def _throughput(result: dict[str, Any]) -> Any:
    return result.get("throughput_ips")


def _size_mb(result: dict[str, Any]) -> Any:
    return None if result.get("size_bytes") is None else bytes_to_mb(result["size_bytes"])


def comparison_table(runs: list[RunData]) -> Table:
    labels = run_labels(runs)
    if len(runs) == 2:
        delta_headers = [f"Δ ({labels[1]} − {labels[0]})"]
    else:
        delta_headers = [f"Δ {label} − {labels[0]}" for label in labels[1:]]
    table = Table("Side by side (Δ against the first run)", ["Metric", *labels, *delta_headers])
    table.rows.append(["recipe", *(str(run.recipe or DASH) for run in runs), *([""] * len(delta_headers))])
    for label, decimals, getter in _metrics(runs):
        values = [getter(run) for run in runs]
        cells = [DASH if value is None else f"{value:,.{decimals}f}" for value in values]
        deltas = [
            DASH if values[0] is None or value is None else f"{value - values[0]:+,.{decimals}f}"
            for value in values[1:]
        ]
        table.rows.append([label, *cells, *deltas])
    return table

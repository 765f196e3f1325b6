"""Bench results as a rich table (artifact x backend x device) and as JSON-ready dicts."""

from __future__ import annotations

from typing import Any

from cidpipe_runtime.latency import high_cov_warning
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from cidpipe.bench.result import BenchResult
from cidpipe.gate.numbers import bytes_to_mb, format_value
from cidpipe.gate.rundir import artifact_label

_STATUS_STYLE = {"pass": "green", "exported-but-failed": "yellow", "failed": "red"}


def _num(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def _size(size_bytes: int | None) -> str:
    # MB of 10^6 bytes, written as the gate (gate.max_size_mb) and the report write them.
    return "-" if size_bytes is None else format_value(bytes_to_mb(size_bytes), "MB")


def _ci(latency: dict[str, float]) -> str:
    low, high = latency.get("p50_ci_low_ms"), latency.get("p50_ci_high_ms")
    return "-" if low is None or high is None else f"{low:.3f}-{high:.3f}"


def _cov(row: BenchResult) -> str:
    cov = _num((row.latency or {}).get("cov"), ".3f")  # ".2f" showed 0.104 as "0.10 noisy" at 0.10
    return f"[yellow]{cov} noisy[/yellow]" if row.noisy else cov


def _format_cell(row: BenchResult) -> str:
    """The row's name in the gate (onnx-int8-trt for the TensorRT graph), marked when QAT retrained it."""
    label = artifact_label(row.to_dict())
    return f"{label} (QAT)" if row.extra.get("retrained") == "qat" else label


def results_table(results: list[BenchResult], title: str = "cidpipe bench") -> Table:
    table = Table(title=title)
    for column, justify in [
        ("artifact", "left"),
        ("format", "left"),
        ("backend", "left"),
        ("device", "left"),
        ("batch", "right"),
        ("status", "left"),
        ("top-1 %", "right"),
        ("agree %", "right"),
        ("p50 ms", "right"),
        ("p50 95% CI", "right"),
        ("p99 ms", "right"),
        ("CoV", "right"),
        ("img/s", "right"),
        ("size", "right"),
    ]:
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for row in results:
        latency = row.latency or {}
        style = _STATUS_STYLE.get(row.status, "")
        table.add_row(
            row.artifact,
            _format_cell(row),
            row.backend,
            row.device,
            str(row.batch_size),
            f"[{style}]{row.status}[/{style}]" if style else row.status,
            _num(row.top1, ".2f"),
            _num(row.agreement, ".2f"),
            _num(latency.get("p50_ms"), ".3f"),
            _ci(latency),
            _num(latency.get("p99_ms"), ".3f"),
            _cov(row),
            _num(row.throughput_ips, ".1f"),
            _size(row.size_bytes),
        )
    return table


def result_notes(results: list[BenchResult], cov_threshold: float) -> list[str]:
    """Lines printed under the table: errors of non-passing rows and high-variance latency warnings."""
    notes = []
    judged_exactly = set()
    for row in results:
        where = f"{row.artifact} [{row.backend}, {row.device}, batch {row.batch_size}]"
        arithmetic = (row.extra or {}).get("accuracy_arithmetic")
        if arithmetic and (row.artifact, row.device) not in judged_exactly:  # once, not per batch size
            judged_exactly.add((row.artifact, row.device))
            notes.append(f"{row.artifact} [{row.device}]: top-1 measured on its {arithmetic}; "
                         "latency on the optimised session")  # fmt: skip
        if row.error:
            notes.append(f"{where} {row.status}: {row.error}")
        warning = high_cov_warning(row.latency, cov_threshold) if row.latency else None
        if warning or row.noisy:
            notes.append(f"{where}: {warning or 'marked noisy (latency varied too much to trust)'}")
    return notes


def print_results(results: list[BenchResult], console: Console, cov_threshold: float) -> None:
    console.print(results_table(results))
    for note in result_notes(results, cov_threshold):  # "[onnxruntime, local, batch 1]" is not markup
        console.print(f"[yellow]![/yellow] {escape(note)}", highlight=False, soft_wrap=True)  # greppable


def results_to_json(results: list[BenchResult]) -> list[dict[str, Any]]:
    """The ``--json`` form: a list of BenchResult dicts (BenchResult.from_dict reads them back)."""
    return [row.to_dict() for row in results]

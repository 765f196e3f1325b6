"""Per-class accuracy and the confusion matrix of the deployed model's artifacts (from the bench rows).

Per-class top-1 shows where a student (or its INT8 artifact) loses what its overall top-1 averages away;
the confusion matrix of the deployed artifact shows what it mistakes for what. Both are read from the
local bench rows of the first batch size (accuracy does not depend on the batch size).
"""

from __future__ import annotations

from typing import Any

from cidpipe.gate.rundir import RunData, artifact_label
from cidpipe.report.headline import DEPLOY_PREFERENCE
from cidpipe.report.tables import DASH, Table, pct

MAX_CLASS_COLUMNS = 20  # beyond this a per-class table is unreadable: the worst classes are listed instead
WORST_SHOWN = 5


def _accuracy_rows(run: RunData) -> list[dict[str, Any]]:
    """One row per (role, artifact label): the first device's first batch size with per-class numbers."""
    seen: dict[tuple[str, str], dict[str, Any]] = {}
    for row in [*run.results, *run.teacher_results]:
        if row.get("status") != "pass" or not (row.get("extra") or {}).get("per_class_top1"):
            continue
        seen.setdefault((str(row.get("role", "student")), artifact_label(row)), row)
    return list(seen.values())


def _class_names(run: RunData, count: int) -> list[str]:
    names = (run.manifests.get("student") or run.manifests.get("teacher") or {}).get("model") or {}
    names = list(names.get("class_names") or [])
    return names if len(names) == count else [str(i) for i in range(count)]


def per_class_table(run: RunData) -> Table | None:
    rows = _accuracy_rows(run)
    if not rows:
        return None
    count = len(rows[0]["extra"]["per_class_top1"])
    names = _class_names(run, count)
    if count <= MAX_CLASS_COLUMNS:
        table = Table("Per-class top-1 % (test split)", ["Model", "Format", *names])
        for row in rows:
            values = row["extra"]["per_class_top1"]
            table.rows.append([str(row.get("role")), artifact_label(row), *(pct(v) for v in values)])
        return table
    table = Table(f"Worst {WORST_SHOWN} classes by top-1 % (test split)", ["Model", "Format", "Classes"])
    for row in rows:
        values = row["extra"]["per_class_top1"]
        ranked = sorted((v, i) for i, v in enumerate(values) if v is not None)[:WORST_SHOWN]
        listed = ", ".join(f"{names[i]} {v:.1f}" for v, i in ranked) or DASH
        table.rows.append([str(row.get("role")), artifact_label(row), listed])
    return table


def confusion_table(run: RunData) -> Table | None:
    """Confusion matrix of the deployed artifact (the headline's: DEPLOY_PREFERENCE)."""
    by_format = {artifact_label(row): row for row in _accuracy_rows(run) if row.get("role") != "teacher"}
    chosen = next(
        (by_format[f] for f in DEPLOY_PREFERENCE if f in by_format), None
    )
    matrix = None if chosen is None else (chosen.get("extra") or {}).get("confusion")
    if not matrix:
        return None
    names = _class_names(run, len(matrix))
    table = Table(
        f"Confusion matrix of {artifact_label(chosen)} (rows: true class, columns: predicted)", ["", *names]
    )
    for name, counts in zip(names, matrix, strict=True):
        table.rows.append([name, *(str(c) for c in counts)])
    return table

"""Result tables printed at the end of a stage."""

from __future__ import annotations

from rich.table import Table

from cidpipe.report.tables import best_epoch_label
from cidpipe.stages.contract import StageResult


def stage_table(results: list[StageResult]) -> Table:
    table = Table(title="results", show_lines=False)
    for column in ("stage", "model", "params", "val top-1", "test top-1", "best epoch", "status"):
        table.add_column(
            column, justify="right" if column in ("params", "val top-1", "test top-1") else "left"
        )
    for result in results:
        m, spec = result.manifest.metrics, result.manifest.model or {}
        head = (spec.get("head") or {}).get("head", "plain")
        model = spec.get("arch", "?") + (f" + {head} head" if head != "plain" else "")
        val, test = _pm(m, "val_top1"), _pm(m, "test_top1")
        table.add_row(
            result.stage,
            model,
            f"{m.get('params', 0) / 1e6:.3f} M",
            val,
            test,
            best_epoch_label(m),
            "cached" if result.cached else "done",
        )
    return table


def _pm(metrics: dict, key: str) -> str:
    if metrics.get(f"{key}_std") is not None:
        return f"{metrics[f'{key}_mean']:.2f} ± {metrics[f'{key}_std']:.2f}"
    return f"{metrics[key]:.2f}" if metrics.get(key) is not None else "-"


def result_json(result: StageResult) -> dict:
    metrics = {k: v for k, v in result.manifest.metrics.items() if k not in ("history", "data")}
    return {
        "stage": result.stage,
        "dir": str(result.stage_dir),
        "id": result.manifest.id,
        "cached": result.cached,
        "model": result.manifest.model,
        "metrics": metrics,
    }

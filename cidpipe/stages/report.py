"""The ``report`` stage: Markdown + HTML of the run (not cached; it only reads finished stages)."""

from __future__ import annotations

from pathlib import Path

from cidpipe.config import Recipe
from cidpipe.report import write_report
from cidpipe.stages.common import StageOptions


def run_report(recipe: Recipe, options: StageOptions) -> dict[str, Path]:
    paths = write_report(
        [recipe.run_dir()],
        recipe.run_dir() / "report",
        html=recipe.report.html,
        latency=recipe.report.latency,
    )
    options.out.print(f"report: {paths.get('html') or paths['markdown']}")
    return paths

"""The ``report`` stage: Markdown + HTML of the run (not cached; it only reads finished stages)."""

from __future__ import annotations

from pathlib import Path

from cidpipe.config import Recipe
from cidpipe.stages.contract import Parent, Stage, StageOptions


class ReportStage(Stage):
    name, verb, addressed = "report", "report", False

    def enabled(self, recipe: Recipe) -> bool:
        return recipe.report.enabled

    def build(
        self, recipe: Recipe, work, inputs: dict[str, Parent], options: StageOptions
    ) -> dict[str, Path]:
        from cidpipe.report import write_report

        paths = write_report(
            [recipe.run_dir()],
            recipe.run_dir() / "report",
            html=recipe.report.html,
            latency=recipe.report.latency,
        )
        options.log.print(f"report: {paths.get('html') or paths['markdown']}")
        return paths


REPORT = ReportStage()

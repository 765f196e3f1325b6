"""The ``gate`` stage: thresholds and an optional baseline applied to a finished run directory.

Not cached: it is cheap and its inputs (gate file, baseline) live outside the run. It writes
gate/gate.json (read by the report), gate/junit.xml and gate/summary.md, and returns the verdict.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cidpipe.config import Recipe
from cidpipe.errors import CidpipeError
from cidpipe.gate import (
    GATE_JSON,
    GateConfig,
    GateReport,
    evaluate_gate,
    load_baseline,
    load_gate_config,
    save_baseline,
    write_gate_json,
    write_junit,
    write_markdown_summary,
)
from cidpipe.stages.contract import Parent, Stage, StageOptions


@dataclass
class GateOutputs:
    report: GateReport
    gate_json: Path
    junit: Path
    summary: Path
    baseline_saved: Path | None = None

    @property
    def passed(self) -> bool:
        """True when every check passed (not-comparable checks do not fail a gate)."""
        return self.report.passed


def run_gate(
    run_dir: Path,
    gate: GateConfig,
    *,
    baseline: Path | None = None,
    save_baseline_to: Path | None = None,
    junit: Path | None = None,
    summary: Path | None = None,
) -> GateOutputs:
    run_dir = Path(run_dir)
    try:
        baseline_data = load_baseline(baseline) if baseline is not None else None
        report = evaluate_gate(run_dir, gate, baseline_data)
    except CidpipeError as err:
        if (run_dir / "recipe.yaml").is_file():  # a run whose old verdict must not stay published
            from cidpipe.gate.outputs import write_run_failure

            try:
                write_run_failure(run_dir, "gate", " ".join(str(err).split()), err.exit_code, junit=junit,
                                  summary=summary)
            except (CidpipeError, OSError):
                pass  # the gate's own error is the one to report
        raise
    gate_json = write_gate_json(report, run_dir / GATE_JSON)
    junit_path = write_junit(report, junit or run_dir / "gate" / "junit.xml")
    summary_path = write_markdown_summary(report, summary or run_dir / "gate" / "summary.md")
    saved = None
    if save_baseline_to is not None and report.passed:
        # Only a passing run becomes the baseline: a CI step `gate --save-baseline` on a regressed run
        # would otherwise make the regression the new reference, silently.
        save_baseline(run_dir, save_baseline_to)
        saved = Path(save_baseline_to)
    return GateOutputs(report, Path(gate_json), Path(junit_path), Path(summary_path), saved)


class GateStage(Stage):
    name, verb, addressed = "gate", "gate", False

    def enabled(self, recipe: Recipe) -> bool:
        return recipe.gate.enabled

    def build(self, recipe: Recipe, work, inputs: dict[str, Parent], options: StageOptions) -> GateOutputs:
        config = load_gate_config(recipe.gate.model_dump(mode="json", exclude_none=True))
        return run_gate(recipe.run_dir(), config, baseline=recipe.gate.baseline)


GATE = GateStage()

"""`cidpipe run`: the whole pipeline of a recipe, cached stage by stage."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from cidpipe.cli.common import (
    DeviceOpt,
    ForceOpt,
    JsonOpt,
    OutOpt,
    RecipeArg,
    ResumeOpt,
    SeedOpt,
    SetOpt,
    emit_json,
    recipe_from_cli,
    stage_options,
    stdout,
)
from cidpipe.cli.common import (
    recipe_device as _device,
)
from cidpipe.errors import GateFailed


def run(
    recipe: RecipeArg,
    set_: SetOpt = None,
    out: OutOpt = None,
    device: DeviceOpt = "auto",
    seed: SeedOpt = None,
    start: Annotated[
        str | None,
        typer.Option("--from", help="start at this stage, by name or verb (earlier ones must exist)"),
    ] = None,
    only: Annotated[
        str | None,
        typer.Option("--only", help="run just this stage (teacher|student|export|...; or train, distill)"),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="print the plan (run / cached / skip, and why)")
    ] = False,
    resume: ResumeOpt = True,
    force: ForceOpt = False,
    json_: JsonOpt = False,
) -> None:
    """Run every stage the recipe enables.  Example: cidpipe run recipes/quickstart.yaml"""
    from cidpipe.pipeline import run_pipeline
    from cidpipe.stages.gate import GateOutputs

    parsed = recipe_from_cli(recipe, set_, out=out, seed=seed)
    options = stage_options(_device(device, parsed), force, resume)
    result = run_pipeline(parsed, options, start=start, only=only, dry_run=dry_run)
    gate = result.results.get("gate")
    gate = gate if isinstance(gate, GateOutputs) else None
    rows = [] if dry_run else _headline_rows(parsed.run_dir())
    payload = {
        "plan": [vars(p) for p in result.plan],
        "run_dir": str(parsed.run_dir()),
        "gate": None if gate is None else gate.report.to_dict(),
        "headline": [row.to_dict() for row in rows],
    }
    if not json_:
        from cidpipe.report.headline import headline_sentence

        stdout.print(plan_table(result.plan, dry_run))
        sentence = headline_sentence(rows)
        if sentence:
            stdout.print(f"[bold]{sentence}[/]")
        if gate is not None:
            from cidpipe.cli.verb_gate import print_gate

            print_gate(gate.report, False)
    if gate is not None and not gate.report.passed:
        names = ", ".join(check.name for check in gate.report.failed)
        failed = GateFailed(f"gate failed: {names} (details in {gate.junit})")
        failed.result = payload  # --json: the plan, the verdict and the headline ride on the error reply
        raise failed
    bench = result.results.get("bench")
    if bench is not None and gate is None:  # no gate judged the rows: a failed artifact is exit 6 here
        from cidpipe.stages.bench import BenchArtifactFailures, raise_for_failed_artifacts

        try:
            raise_for_failed_artifacts(parsed, bench.manifest)
        except BenchArtifactFailures as failed:
            failed.result = payload
            raise
    if json_:
        emit_json(payload)


def _headline_rows(run_dir):
    """Student-vs-teacher rows of a run that benched both (empty otherwise)."""
    from cidpipe.gate.rundir import load_run
    from cidpipe.report.headline import headline

    if not (run_dir / "bench" / "manifest.json").is_file():
        return []
    return headline(load_run(run_dir))


def plan_table(plan, dry_run: bool) -> Table:
    table = Table(title="plan" if dry_run else "pipeline")
    for column in ("stage", "action", "why", "id"):
        table.add_column(column)
    colours = {"run": "yellow", "cached": "green", "skip": "dim"}
    for step in plan:
        action, reason = step.action, step.reason
        if not dry_run and action == "run":  # after the run: what happened, not what the plan said was due
            action, reason = "ran", reason.replace("not run yet", "first run", 1)
        table.add_row(step.name, f"[{colours[step.action]}]{action}[/]", reason, (step.id or "")[:12])
    return table


def register(app: typer.Typer) -> None:
    app.command("run")(run)

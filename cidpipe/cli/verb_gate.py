"""`cidpipe gate`: CI regression checks of a finished run (exit 0 pass, 1 regression, 2 usage error)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from cidpipe.cli.common import JsonOpt, emit_json, stdout
from cidpipe.errors import GateFailed, UsageError


def gate(
    run_dir: Annotated[Path, typer.Argument(help="a run directory, e.g. runs/quickstart")],
    gate_file: Annotated[
        Path | None, typer.Option("--gate", help="gate YAML (default: the run's recipe)")
    ] = None,
    baseline: Annotated[
        Path | None, typer.Option("--baseline", help="compare with this stored baseline")
    ] = None,
    save_baseline: Annotated[
        Path | None, typer.Option("--save-baseline", help="store this run's numbers as a baseline")
    ] = None,
    junit: Annotated[
        Path | None, typer.Option("--junit", help="JUnit XML path (default RUN/gate/junit.xml)")
    ] = None,
    summary: Annotated[Path | None, typer.Option("--summary", help="Markdown summary path")] = None,
    json_: JsonOpt = False,
) -> None:
    """Check a run against thresholds and a baseline.  Example: cidpipe gate runs/quickstart"""
    from cidpipe.gate import load_gate_config
    from cidpipe.stages.gate import run_gate

    config = load_gate_config(gate_file) if gate_file else _recipe_gate(run_dir)
    outputs = run_gate(
        run_dir, config, baseline=baseline, save_baseline_to=save_baseline, junit=junit, summary=summary
    )
    if not outputs.report.passed:
        if not json_:
            print_gate(outputs.report, False)
        names = ", ".join(check.name for check in outputs.report.failed)
        unsaved = (f"; baseline not saved to {save_baseline} (a failing run is no baseline)"
                   if save_baseline else "")
        failed = GateFailed(
            f"gate failed: {len(outputs.report.failed)} check(s): {names} (see {outputs.junit}){unsaved}"
        )
        failed.result = outputs.report.to_dict()  # --json: the verdict rides on the error reply
        raise failed
    print_gate(outputs.report, json_)
    if outputs.baseline_saved and not json_:
        stdout.print(f"baseline saved to {outputs.baseline_saved}")
    if outputs.baseline_saved:
        _warn_of_noisy_baseline(outputs.baseline_saved)


def _warn_of_noisy_baseline(path: Path) -> None:
    """A baseline recorded from noisy rows gates latency loosely (or flaps): say so when it is saved."""
    from cidpipe.cli.common import console
    from cidpipe.gate.baseline import load_baseline

    noisy = [entry.get("subject") or entry.get("format") for entry in load_baseline(path).get("results", [])
             if entry.get("noisy")]  # fmt: skip
    if noisy:
        console.print(
            f"[yellow]warning[/]: {len(noisy)} baseline row(s) were noisy ({', '.join(map(str, noisy[:4]))}"
            f"{', ...' if len(noisy) > 4 else ''}): latency compared with them gates loosely; re-bench on a "
            "quiet machine (raise bench.runs / bench.min_seconds) before recording the baseline",
            highlight=False,
        )


def _recipe_gate(run_dir: Path):
    from cidpipe.gate import load_gate_config

    recipe_file = Path(run_dir) / "recipe.yaml"
    if not recipe_file.is_file():
        from cidpipe.gate import load_run

        load_run(Path(run_dir))  # says "not a run directory" when that is the problem
        raise UsageError(f"{run_dir} has no recipe.yaml to take the gate from; pass --gate FILE")
    from cidpipe.untrusted import load_yaml_file

    raw = load_yaml_file(recipe_file, "run recipe") or {}
    if not isinstance(raw, dict):
        raise UsageError(f"{recipe_file} is not a recipe mapping; pass --gate FILE")
    return load_gate_config(raw.get("gate") or {})


def print_gate(report, as_json: bool) -> None:
    if as_json:
        emit_json(report.to_dict())
        return
    table = Table(title=f"gate: {'PASS' if report.passed else 'FAIL'}")
    for column in ("check", "result", "details"):
        table.add_column(column)
    shown = {"pass": "[green]pass[/]", "fail": "[red]FAIL[/]", "not_comparable": "[yellow]not comparable[/]"}
    for check in report.checks:
        result = shown.get(check.outcome, check.outcome) + (" [yellow](noisy)[/]" if check.noisy else "")
        table.add_row(escape(check.name), result, escape(check.message))
    stdout.print(table)
    for note in report.notes:  # e.g. the baseline was recorded for another recipe: not only in the files
        stdout.print(f"[yellow]note[/]: {escape(note)}", highlight=False, soft_wrap=True)  # one line


def register(app: typer.Typer) -> None:
    app.command("gate")(gate)

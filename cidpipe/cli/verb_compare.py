"""`cidpipe compare`: teacher once, then every method x seed student; mean ± std table in Markdown."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from cidpipe.cli.common import (
    DeviceOpt,
    ForceOpt,
    JsonOpt,
    RecipeArg,
    ResumeOpt,
    SetOpt,
    emit_json,
    parse_seeds,
    recipe_from_cli,
    save_run_recipe,
    stage_options,
    stdout,
)


def _names(text: str | None) -> list[str]:
    return [part.strip() for part in (text or "").split(",") if part.strip()]


def compare(
    recipe: RecipeArg,
    methods: Annotated[
        str, typer.Option("--methods", help="comma-separated distill methods")
    ] = "ce,kd,fitnet,dkd,cid",
    seeds: Annotated[str, typer.Option("--seeds", help="student seeds, e.g. 0,1,2")] = "0,1,2",
    probe: Annotated[
        str | None,
        typer.Option("--probe", help="linear-probe datasets for every model, e.g. digits,mnist"),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Markdown file to write the table into (its section is replaced)"),
    ] = None,
    set_: SetOpt = None,
    device: DeviceOpt = "auto",
    resume: ResumeOpt = True,
    force: ForceOpt = False,
    json_: JsonOpt = False,
) -> None:
    """Compare distillation methods over seeds.  Example: cidpipe compare bias_digits --seeds 0,1,2"""
    from cidpipe.study.compare import run_comparison
    from cidpipe.study.markdown import column_title
    from cidpipe.study.stats import format_mean_std

    parsed = recipe_from_cli(recipe, set_)
    command = (
        "cidpipe " + shlex.join(["compare", *sys.argv[sys.argv.index("compare") + 1 :]])
        if "compare" in sys.argv
        else None
    )
    result = run_comparison(
        parsed,
        methods=_names(methods),
        seeds=parse_seeds(seeds),
        probes=_names(probe),
        options=stage_options(device, force, resume),
        out=out,
        command=command,
    )
    save_run_recipe(parsed)
    if json_:
        emit_json(result.to_json())
        return
    columns = result.metric_columns()
    table = Table(title=f"compare: {parsed.name} (mean ± std over seeds {result.seeds})")
    table.add_column("model")
    for column in columns:
        table.add_column(column_title(column), justify="right")
    table.add_row("teacher", *(format_mean_std([result.teacher.metrics[c]]) for c in columns))
    for method in result.methods:
        records = result.records(method)
        table.add_row(
            method,
            *(format_mean_std([r.metrics[c] for r in records]) if records else "diverged" for c in columns),
        )
    stdout.print(table)
    if out is not None:
        stdout.print(f"wrote {out} (section '{parsed.name}') in {result.wall_seconds:.0f} s")


def register(app: typer.Typer) -> None:
    app.command("compare")(compare)

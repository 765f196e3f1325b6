"""`cidpipe distill`: train the student from the teacher with CID or a baseline."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

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
    save_run_recipe,
    stage_options,
    stdout,
)
from cidpipe.cli.tables import result_json, stage_table


def distill(
    recipe: RecipeArg,
    set_: SetOpt = None,
    out: OutOpt = None,
    device: DeviceOpt = "auto",
    seed: SeedOpt = None,
    seeds: Annotated[
        str | None, typer.Option("--seeds", help="several seeds, e.g. 1,2,3: mean ± std")
    ] = None,
    method: Annotated[str | None, typer.Option("--method", help="ce, kd, fitnet, dkd or cid")] = None,
    teacher: Annotated[
        Path | None, typer.Option("--teacher", help="teacher stage dir (default: the run's)")
    ] = None,
    resume: ResumeOpt = True,
    force: ForceOpt = False,
    json_: JsonOpt = False,
) -> None:
    """Distill the student from the teacher.  Example: cidpipe distill recipes/quickstart.yaml --method cid"""
    from cidpipe.stages.distill import run_distill

    overrides = list(set_ or []) + ([f"distill.method={method}"] if method else [])
    parsed = recipe_from_cli(recipe, overrides, out=out, seed=seed, seeds=seeds)
    result = run_distill(parsed, stage_options(device, force, resume), teacher_dir=teacher)
    save_run_recipe(parsed)
    emit_json(result_json(result)) if json_ else stdout.print(stage_table([result]))


def register(app: typer.Typer) -> None:
    app.command("distill")(distill)

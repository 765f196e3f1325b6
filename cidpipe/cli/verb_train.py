"""`cidpipe train`: cross-entropy training of the teacher."""

from __future__ import annotations

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


def train(
    recipe: RecipeArg,
    set_: SetOpt = None,
    out: OutOpt = None,
    device: DeviceOpt = "auto",
    seed: SeedOpt = None,
    resume: ResumeOpt = True,
    force: ForceOpt = False,
    json_: JsonOpt = False,
) -> None:
    """Train the recipe's teacher with cross-entropy.  Example: cidpipe train recipes/quickstart.yaml"""
    from cidpipe.stages.train import run_train

    parsed = recipe_from_cli(recipe, set_, out=out, seed=seed)
    result = run_train(parsed, stage_options(device, force, resume))
    save_run_recipe(parsed)
    emit_json(result_json(result)) if json_ else stdout.print(stage_table([result]))


def register(app: typer.Typer) -> None:
    app.command("train")(train)

"""`cidpipe train`: cross-entropy training of the teacher."""

from __future__ import annotations

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
from cidpipe.cli.common import (
    recipe_device as _device,
)
from cidpipe.cli.relaunch import relaunch_if_requested
from cidpipe.cli.tables import result_json, stage_table

NprocOpt = Annotated[
    int,
    typer.Option("--nproc", help="train with N processes (DDP through torchrun; gloo on CPU, NCCL on GPUs)"),
]


def train(
    ctx: typer.Context,
    recipe: RecipeArg,
    set_: SetOpt = None,
    out: OutOpt = None,
    device: DeviceOpt = "auto",
    seed: SeedOpt = None,
    resume: ResumeOpt = True,
    force: ForceOpt = False,
    json_: JsonOpt = False,
    nproc: NprocOpt = 1,
) -> None:
    """Train the recipe's teacher with cross-entropy.  Example: cidpipe train recipes/quickstart.yaml"""
    from cidpipe.errors import UsageError
    from cidpipe.stages.train import run_train
    from cidpipe.training import distributed

    parsed = recipe_from_cli(recipe, set_, out=out, seed=seed)
    if parsed.teacher.model.weights is not None and (nproc > 1 or distributed.launched_world_size() > 1):
        raise UsageError(
            "a teacher from teacher.model.weights is imported or fine-tuned in one process; drop --nproc"
        )
    relaunch_if_requested(ctx, nproc)
    options = stage_options(_device(device, parsed), force, resume)
    options.device = distributed.init_from_env(options.device)  # cuda -> cuda:LOCAL_RANK under torchrun
    result = run_train(parsed, options)
    if distributed.rank_and_world()[0] == 0:  # one recipe copy and one result table, not one per rank
        save_run_recipe(parsed)
        emit_json(result_json(result)) if json_ else stdout.print(stage_table([result]))
    distributed.shutdown()


def register(app: typer.Typer) -> None:
    app.command("train")(train)

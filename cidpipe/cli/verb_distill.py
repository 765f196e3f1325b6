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
from cidpipe.cli.common import (
    recipe_device as _device,
)
from cidpipe.cli.relaunch import relaunch_if_requested
from cidpipe.cli.tables import result_json, stage_table

NprocOpt = Annotated[
    int,
    typer.Option("--nproc", help="train with N processes (DDP through torchrun; gloo on CPU, NCCL on GPUs)"),
]


def distill(
    ctx: typer.Context,
    recipe: RecipeArg,
    set_: SetOpt = None,
    out: OutOpt = None,
    device: DeviceOpt = "auto",
    seed: SeedOpt = None,
    seeds: Annotated[
        str | None, typer.Option("--seeds", help="several seeds, e.g. 1,2,3: mean ± std")
    ] = None,
    method: Annotated[
        str | None,
        typer.Option("--method", help="a registered method, e.g. cid (`cidpipe recipes schema` lists all)"),
    ] = None,
    teacher: Annotated[
        Path | None, typer.Option("--teacher", help="teacher stage dir (default: the run's)")
    ] = None,
    resume: ResumeOpt = True,
    force: ForceOpt = False,
    json_: JsonOpt = False,
    nproc: NprocOpt = 1,
) -> None:
    """Distill the student from the teacher.  Example: cidpipe distill recipes/quickstart.yaml --method cid"""
    from cidpipe.stages.distill import run_distill
    from cidpipe.training import distributed

    overrides = list(set_ or []) + ([f"distill.method={method}"] if method else [])
    parsed = recipe_from_cli(recipe, overrides, out=out, seed=seed, seeds=seeds)
    relaunch_if_requested(ctx, nproc)
    options = stage_options(_device(device, parsed), force, resume)
    options.device = distributed.init_from_env(options.device)  # cuda -> cuda:LOCAL_RANK under torchrun
    result = run_distill(parsed, options, teacher_dir=teacher)
    if distributed.rank_and_world()[0] == 0:  # one recipe copy and one result table, not one per rank
        save_run_recipe(parsed)
        emit_json(result_json(result)) if json_ else stdout.print(stage_table([result]))
    distributed.shutdown()


def register(app: typer.Typer) -> None:
    app.command("distill")(distill)

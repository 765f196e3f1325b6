"""`cidpipe eval`: accuracy of any model or artifact of a run on validation, test and bias flavours."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from cidpipe.cli.common import JsonOpt, SetOpt, emit_json, resolve_target, stdout


def eval_cmd(
    target: Annotated[str, typer.Argument(help="run dir, stage dir (runs/<name>/student) or recipe")],
    artifact: Annotated[
        Path | None, typer.Option("--artifact", help="an .onnx file to evaluate instead")
    ] = None,
    set_: SetOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Evaluate a model or artifact.  Example: cidpipe eval runs/quickstart/student"""
    from cidpipe.stages.evaluate import evaluate

    recipe, stage = resolve_target(target, set_)
    result = evaluate(recipe, artifact or stage)
    if json_:
        emit_json(result)
        return
    table = Table(title=f"eval: {result['model']} on {result['dataset']}")
    table.add_column("split")
    table.add_column("top-1 %", justify="right")
    for key, value in result.items():
        if key.endswith("_top1") or key == "bias_gap":
            table.add_row(key.removesuffix("_top1"), f"{value:.2f}")
    stdout.print(table)


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_cmd)

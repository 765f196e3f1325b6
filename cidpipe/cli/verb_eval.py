"""`cidpipe eval`: accuracy of any model or artifact of a run on validation, test and bias flavours."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from cidpipe.cli.common import DeviceOpt, JsonOpt, SetOpt, emit_json, resolve_target, stdout


def eval_cmd(
    target: Annotated[str, typer.Argument(help="run dir, stage dir (runs/<name>/student) or recipe")],
    artifact: Annotated[
        Path | None, typer.Option("--artifact", help="an .onnx file to evaluate instead")
    ] = None,
    linear_probe: Annotated[
        list[str] | None,
        typer.Option(
            "--linear-probe",
            help="fit a linear classifier on frozen features of this dataset (digits, mnist, fashion-mnist, "
            "cifar10, ...); repeat or comma-separate for several",
        ),
    ] = None,
    device: DeviceOpt = "cpu",
    set_: SetOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Evaluate a model or artifact.  Example: cidpipe eval runs/quickstart/student --linear-probe mnist"""
    from cidpipe.stages.common import resolve_device
    from cidpipe.stages.evaluate import evaluate

    probes = [name.strip() for text in linear_probe or [] for name in text.split(",") if name.strip()]
    recipe, stage = resolve_target(target, set_)
    result = evaluate(recipe, artifact or stage, linear_probes=probes, device=resolve_device(device))
    if json_:
        emit_json(result)
        return
    table = Table(title=f"eval: {result['model']} on {result['dataset']}")
    table.add_column("split")
    table.add_column("top-1 %", justify="right")
    for key, value in result.items():
        if key.endswith("_top1") or key == "bias_gap":
            table.add_row(key.removesuffix("_top1"), f"{value:.2f}")
    for name, probe in result.get("linear_probe", {}).items():
        table.add_row(f"linear probe {name} ({probe['train_samples']} train)", f"{probe['top1']:.2f}")
    stdout.print(table)


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_cmd)

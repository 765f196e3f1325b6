"""`cidpipe models`: the model registry."""

from __future__ import annotations

from dataclasses import asdict

import typer
from rich.table import Table

from cidpipe.cli.common import JsonOpt, emit_json, stdout


def models(json_: JsonOpt = False) -> None:
    """List the registered model architectures.  Example: cidpipe models"""
    from cidpipe.models import list_models, model_info

    rows = [model_info(name) for name in list_models()]
    if json_:
        emit_json([asdict(info) for info in rows])
        return
    table = Table(title="models")
    for column in ("name", "family", "default lr", "published params (M)"):
        table.add_column(column)
    for info in rows:
        table.add_row(
            info.name,
            info.family,
            f"{info.default_lr:g}",
            f"{info.reference_params_m:.2f}" if info.reference_params_m else "",
        )
    stdout.print(table)


def register(app: typer.Typer) -> None:
    app.command("models")(models)

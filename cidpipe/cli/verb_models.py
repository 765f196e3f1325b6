"""`cidpipe models`: the model registry."""

from __future__ import annotations

from dataclasses import asdict

import typer
from rich.table import Table

from cidpipe.cli.common import JsonOpt, emit_json, stdout

# The registry is the CIFAR-family demo set; a user's own network comes through a source prefix, which a
# listing of registry names alone would hide from the person most likely to need it.
SOURCES_HINT = (
    "Your own model: model.arch: timm:<name> (e.g. timm:resnet50), torchvision:<name> (e.g. "
    "torchvision:mobilenet_v3_large) or python:<module>:<function> (needs CIDPIPE_ALLOW_PYTHON_MODELS=1), "
    "with model.weights: your .safetensors / .pt file; see the README, \"Bring your own model\"."
)


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
    stdout.print(SOURCES_HINT, soft_wrap=True, highlight=False)


def register(app: typer.Typer) -> None:
    app.command("models")(models)

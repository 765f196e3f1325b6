"""`cidpipe predict`: top-k classes of image files, with the artifact's own preprocessing."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from cidpipe.cli.common import JsonOpt, emit_json, stdout


def predict(
    artifact: Annotated[Path, typer.Argument(help=".onnx file or stage directory (runs/<name>/student)")],
    images: Annotated[list[Path], typer.Argument(help="image files (PNG, JPEG, ...)")],
    top_k: Annotated[int, typer.Option("--top-k", help="classes shown per image")] = 3,
    json_: JsonOpt = False,
) -> None:
    """Classify images.  Example: cidpipe predict runs/quickstart/export/model.onnx digit.png"""
    from cidpipe.predict import predict as run_predict

    results = run_predict(artifact, images, top_k=top_k)
    if json_:
        emit_json(results)
        return
    table = Table(title=f"predict: {artifact}")
    for column in ("image", "class", "probability"):
        table.add_column(column)
    for result in results:
        for rank, top in enumerate(result["top"]):
            table.add_row(
                escape(result["image"]) if rank == 0 else "",
                escape(top["class"]),
                f"{top['probability']:.3f}",
            )
    stdout.print(table)


def register(app: typer.Typer) -> None:
    app.command("predict")(predict)

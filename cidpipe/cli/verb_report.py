"""`cidpipe report`: Markdown + self-contained HTML with plots, for one run or two side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cidpipe.cli.common import JsonOpt, emit_json, stdout


def report(
    runs: Annotated[list[Path], typer.Argument(help="one run directory, or two to compare (A B)")],
    out: Annotated[Path | None, typer.Option("--out", help="output directory (default RUN/report)")] = None,
    html: Annotated[bool, typer.Option("--html/--no-html", help="also write report.html")] = True,
    json_: JsonOpt = False,
) -> None:
    """Write the report of a run (two runs: side by side).  Example: cidpipe report runs/quickstart"""
    from cidpipe.errors import UsageError
    from cidpipe.report import write_report

    if len(runs) > 2:
        raise UsageError("cidpipe report takes one run directory, or two to compare")
    target = out or runs[-1] / "report"
    paths = write_report(list(runs), target, html=html)
    if json_:
        emit_json({key: str(path) for key, path in paths.items()})
    else:
        for key, path in paths.items():
            stdout.print(f"{key}: {path}")


def register(app: typer.Typer) -> None:
    app.command("report")(report)

"""The consoles cidpipe writes to, made one way for the CLI and the Python API alike."""

from __future__ import annotations

import os

from rich.console import Console

# Logs, CI and notebooks are not terminals: rich would squeeze tables to 80 columns there. 200 fits the
# bench table's 14 columns without cutting artifact names (tables take only the width they need); COLUMNS,
# when set, wins.
NON_TERMINAL_WIDTH = 200


def make_console(*, stderr: bool) -> Console:
    console = Console(stderr=stderr)
    if not console.is_terminal:
        columns = os.environ.get("COLUMNS", "")
        console.width = int(columns) if columns.isdigit() and int(columns) >= 40 else NON_TERMINAL_WIDTH
    return console

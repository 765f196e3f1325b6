"""The consoles cidpipe writes to, made one way for the CLI and the Python API alike."""

from __future__ import annotations

from rich.console import Console

# Logs, CI and notebooks are not terminals: rich would squeeze tables to 80 columns there.
NON_TERMINAL_WIDTH = 140


def make_console(*, stderr: bool) -> Console:
    console = Console(stderr=stderr)
    if not console.is_terminal:
        console.width = NON_TERMINAL_WIDTH
    return console

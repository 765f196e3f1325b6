"""The ``cidpipe`` command: builds the Typer app and maps errors to one line and an exit code, once."""

from __future__ import annotations

import os
import sys

import typer

from cidpipe.errors import EXIT_CODES, CidpipeError

app = typer.Typer(
    name="cidpipe",
    help="Turn a large image classifier into a small, fast, verified edge model: "
    "train -> distill (CID) -> quantize -> export -> bench -> gate/report.\n\n"
    "Exit codes: " + "; ".join(f"{code} {what}" for code, what in EXIT_CODES.items()),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode="rich",
)


def _register_verbs() -> None:
    # One small module per verb; each exposes register(app).
    from cidpipe.cli import verbs

    for module in verbs.all_modules():
        module.register(app)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    debug = os.environ.get("CIDPIPE_DEBUG") == "1"
    _register_verbs()
    try:
        app(args=argv, standalone_mode=False, prog_name="cidpipe")
    except CidpipeError as err:
        if debug:
            raise
        typer.echo(f"error: {err}", err=True)
        sys.exit(err.exit_code)
    except typer.Exit as done:
        sys.exit(done.exit_code)
    except typer.TyperException as err:  # bad command line (unknown option, missing argument, ...)
        if debug:
            raise
        typer.echo(f"error: {err.format_message()}", err=True)
        sys.exit(2)
    except (KeyboardInterrupt, typer.Abort):
        typer.echo("interrupted; rerun the same command to resume from the last checkpoint", err=True)
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - the single place that turns surprises into one line
        if debug:
            raise
        typer.echo(
            f"error: unexpected {type(exc).__name__}: {exc} (rerun with CIDPIPE_DEBUG=1 for a traceback)",
            err=True,
        )
        sys.exit(1)
    sys.exit(0)

"""The one JSON shape every verb prints with ``--json``: ``{schema, verb, ok, result, error}``.

Exactly one object per command on stdout, success or failure: ``result`` is the verb's payload (see
docs/json.md), ``error`` is ``null`` or ``{"exit_code": n, "message": "..."}``. A verb that fails after
producing something worth keeping (a bench with failed device rows, a gate that failed) attaches it to
the error as ``result`` instead of printing it first, so a reader never has to parse two documents.
"""

from __future__ import annotations

import json
import sys
from typing import Any

JSON_SCHEMA = 1


def envelope(verb: str, result: Any, error: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"schema": JSON_SCHEMA, "verb": verb, "ok": error is None, "result": result, "error": error}


def dumps(data: Any) -> str:
    return json.dumps(data, indent=2, default=str)


# The argument list of the command being run, set by cidpipe.cli.main before dispatching: the verb a reply
# names is resolved from it (the click context is private to the Typer versions cidpipe supports).
_argv: list[str] = []


def set_argv(argv: list[str]) -> None:
    global _argv
    _argv = list(argv)


def current_verb() -> str:
    """The verb being run (``bench``, ``devices check``)."""
    return verb_from_argv(_argv)


def verb_from_argv(argv: list[str]) -> str:
    """The verb an argument list names, resolved through the registered commands."""
    import typer

    from cidpipe.cli.main import app

    command = typer.main.get_command(app)
    path: list[str] = []
    tokens = iter(argv)
    for token in tokens:
        subcommands = getattr(command, "commands", None)  # a group of verbs (devices, recipes)
        if not subcommands:
            break
        if token.startswith("-"):  # a group's own option before the verb (cidpipe --threads 1 gate ...)
            if "=" not in token and _takes_value(command, token):
                next(tokens, None)
            continue
        if token not in subcommands:
            break
        path.append(token)
        command = subcommands[token]
    return " ".join(path) or "cidpipe"


def _takes_value(command: Any, option: str) -> bool:
    for param in getattr(command, "params", []):
        if option in getattr(param, "opts", ()):
            return not getattr(param, "is_flag", False) and not getattr(param, "count", False)
    return False


def json_requested(argv: list[str]) -> bool:
    return "--json" in argv


def print_error(argv: list[str], exit_code: int, message: str, result: Any = None) -> None:
    error = {"exit_code": exit_code, "message": message}
    sys.stdout.write(dumps(envelope(verb_from_argv(argv), result, error)) + "\n")
    sys.stdout.flush()

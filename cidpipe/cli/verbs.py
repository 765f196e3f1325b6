"""The list of verb modules, in the order `cidpipe --help` shows them."""

from __future__ import annotations

import importlib
from types import ModuleType

VERB_MODULES = [
    "run",
    "train",
    "distill",
    "quantize",
    "export",
    "bench",
    "devices",
    "gate",
    "report",
    "eval",
    "compare",
    "recipes",
    "models",
]


def all_modules() -> list[ModuleType]:
    modules = []
    for name in VERB_MODULES:
        try:
            modules.append(importlib.import_module(f"cidpipe.cli.verb_{name}"))
        except ModuleNotFoundError as exc:
            if exc.name != f"cidpipe.cli.verb_{name}":
                raise
    return modules

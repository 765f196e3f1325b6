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
    "predict",
    "compare",
    "recipes",
    "models",
]


def all_modules() -> list[ModuleType]:
    return [importlib.import_module(f"cidpipe.cli.verb_{name}") for name in VERB_MODULES]

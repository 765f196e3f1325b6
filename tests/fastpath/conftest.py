"""Fixtures for the fast-path tests: the reference-style ("plain path") implementation from benchmarks/."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

_REFERENCE = Path(__file__).resolve().parents[2] / "benchmarks" / "fast_path_reference.py"


@pytest.fixture(scope="session")
def reference():
    """benchmarks/fast_path_reference.py as a module (benchmarks/ is not a package)."""
    name = "fast_path_reference"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, _REFERENCE)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]

"""Fixtures for the report tests: the same fake run directories as the gate tests (tests/gate/fake_run.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "gate"))

from fake_run import write_run  # noqa: E402


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return write_run(tmp_path)

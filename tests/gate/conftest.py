"""Fixtures for the gate tests: fake run directories in the lead's exact layout (see fake_run.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from fake_run import write_run  # noqa: E402


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """A run with teacher, student and three passing bench results (torch, onnx-fp32, onnx-int8)."""
    return write_run(tmp_path)

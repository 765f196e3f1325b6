"""Fixtures for the gate tests: fake run directories in the lead's exact layout (see fake_run.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.gate.fake_run import write_run


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """A run with teacher, student and three passing bench results (torch, onnx-fp32, onnx-int8)."""
    return write_run(tmp_path)

"""Model tests run on one CPU thread: the machine is shared, and single-threaded results are reproducible."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def single_thread() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(autouse=True)
def allow_python_models(monkeypatch) -> None:
    """The python: model source is opt-in (CIDPIPE_ALLOW_PYTHON_MODELS); these tests opt in, and
    test_sources.py::test_python_sources_are_opt_in checks the refusal."""
    monkeypatch.setenv("CIDPIPE_ALLOW_PYTHON_MODELS", "1")

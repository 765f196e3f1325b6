"""Consoles that are not terminals (CI logs) are NON_TERMINAL_WIDTH columns wide, or COLUMNS when set."""

from __future__ import annotations

import pytest

from cidpipe.console import NON_TERMINAL_WIDTH, make_console

CASES = [(None, NON_TERMINAL_WIDTH), ("220", 220), ("junk", NON_TERMINAL_WIDTH), ("5", NON_TERMINAL_WIDTH)]


@pytest.mark.parametrize(("columns", "width"), CASES)
def test_width_of_a_non_terminal_console(monkeypatch, columns, width):
    if columns is None:
        monkeypatch.delenv("COLUMNS", raising=False)
    else:
        monkeypatch.setenv("COLUMNS", columns)
    assert make_console(stderr=True).width == width  # pytest captures output: never a terminal here

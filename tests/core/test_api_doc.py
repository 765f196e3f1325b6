"""docs/api.md's example is executed as written: the Python API page cannot drift from the code."""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)


def test_the_api_example_runs(capsys):
    blocks = python_blocks(DOC.read_text(encoding="utf-8"))
    assert len(blocks) == 1, "docs/api.md should hold one runnable example"
    exec(compile(blocks[0], str(DOC), "exec"), {"__name__": "api_example"})  # noqa: S102 - our own doc
    printed = capsys.readouterr().out
    assert "gate passed: True" in printed
    assert "student test top-1:" in printed
    assert re.search(r"^teacher\s+run\s+not run yet", printed, flags=re.MULTILINE)

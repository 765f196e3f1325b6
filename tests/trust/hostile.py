"""Shared checks for the hostile-input tests: how a refused input must look from outside.

Every case runs the real `cidpipe` entry point in a subprocess (tests.conftest.run_cli) and then asserts the
promise of the README: the documented exit code, one line on stderr that says what to fix, no traceback,
and nothing written outside the run directory.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

# A "billion laughs" YAML: nine levels of nine-fold aliases, 9^9 strings once expanded, 400 bytes on disk.
BOMB = """\
a: &a ["x","x","x","x","x","x","x","x","x"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


def tree_snapshot(root: Path, *, exclude: Path | None = None) -> dict[str, tuple[int, int]]:
    """{relative path: (size, mtime_ns)} of every file and directory under ``root`` (minus ``exclude``)."""
    root = Path(root)
    snapshot: dict[str, tuple[int, int]] = {}
    for path in root.rglob("*"):
        if exclude is not None and (path == exclude or exclude in path.parents):
            continue
        stat = path.lstat()
        size = stat.st_size if path.is_file() else 0
        snapshot[path.relative_to(root).as_posix()] = (size, stat.st_mtime_ns)
    return snapshot


def assert_clean_failure(
    result: subprocess.CompletedProcess, code: int, needle: str | None = None
) -> str:
    """The documented exit code, a last stderr line 'error: ...' (containing ``needle``), no traceback.

    Returns that line so a test can check more of it.
    """
    assert result.returncode == code, f"exit {result.returncode}, wanted {code}\n{result.stderr[-3000:]}"
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert "Traceback" not in result.stdout, result.stdout[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines, "a failure must say why on stderr"
    last = lines[-1]
    assert last.startswith("error: "), result.stderr[-3000:]
    if needle is not None:
        assert needle.lower() in last.lower(), f"{needle!r} not in {last!r}"
    return last


def assert_nothing_outside(before: dict, after: dict, allowed_prefix: str | None = None) -> None:
    """No file outside ``allowed_prefix`` (a path relative to the snapshot root) was created or changed."""
    changed = sorted(
        key
        for key in set(before) | set(after)
        if before.get(key) != after.get(key)
        and not (allowed_prefix and (key == allowed_prefix or key.startswith(allowed_prefix + "/")))
    )
    assert not changed, f"written outside the run directory: {changed[:10]}"

"""Shared checks for the hostile-input tests: how a refused input must look from outside.

Every case runs the real `cidpipe` entry point in a subprocess (tests.conftest.run_cli) and then asserts the
promise of the README: the documented exit code, one line on stderr that says what to fix, no traceback,
and nothing written outside the run directory.
"""

from __future__ import annotations

import os
import struct
import subprocess
import zlib
from pathlib import Path

import yaml

from tests.conftest import tiny_recipe_dict

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


def write_recipe(root: Path, **sections) -> Path:
    """``root/recipe.yaml``: the tiny test recipe (tests/conftest.py) with ``sections`` merged in, runs under
    ``root/runs``."""
    path = Path(root) / "recipe.yaml"
    path.write_text(yaml.safe_dump(tiny_recipe_dict(Path(root) / "runs", **sections)))
    return path


def one_epoch_kd_export(**overrides: dict) -> dict[str, dict]:
    """Recipe sections of the cheapest full run: one-epoch teacher and KD student, exported ONNX."""
    sections: dict[str, dict] = {
        "teacher": {"train": {"epochs": 1}},
        "student": {"train": {"epochs": 1}},
        "distill": {"method": "kd"},
        "export": {"enabled": True, "parity": {"samples": 64}},
    }
    sections.update(overrides)
    return sections


def cidpipe_env(**extra: str) -> dict[str, str]:
    """The environment of a `cidpipe` subprocess: tracebacks off (CIDPIPE_DEBUG unset), one OpenMP thread.

    What a user's shell gives, minus a CIDPIPE_DEBUG=1 the developer may have set; one thread because
    the tests share two cores. The same as tests.conftest.run_cli, for callers that need Popen.
    """
    env = {key: value for key, value in os.environ.items() if key != "CIDPIPE_DEBUG"}
    env["OMP_NUM_THREADS"] = "1"
    env.update(extra)
    return env


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


def png_bytes(width: int, height: int, idat: bytes) -> bytes:
    """A 1-bit grayscale PNG with the given size and IDAT payload, written chunk by chunk.

    The header may declare any size whatever the payload holds: the shape of a decompression bomb.
    """

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def zero_png(side: int) -> bytes:
    """A complete, valid all-black image: side rows of (filter byte + side/8 bytes), ~12 kB compressed."""
    return png_bytes(side, side, zlib.compress(bytes(side * (1 + side // 8)), 9))

"""Published files get the mode the user's umask gives any other file (mkstemp alone would make them 0600),
and a failed write leaves neither the old file changed nor a temp file behind."""

from __future__ import annotations

import os
import stat

import pytest

from cidpipe.atomic import atomic_write_text, atomic_write_with, current_umask


@pytest.mark.parametrize(("mask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_published_files_follow_the_umask(tmp_path, mask, mode):
    before = os.umask(mask)
    try:
        assert current_umask() == mask
        path = atomic_write_text(tmp_path / "summary.md", "ok\n")
        rewritten = atomic_write_with(tmp_path / "model.onnx", lambda tmp: tmp.write_bytes(b"x"))
    finally:
        os.umask(before)
    assert stat.S_IMODE(path.stat().st_mode) == mode
    assert stat.S_IMODE(rewritten.stat().st_mode) == mode


def test_a_failed_write_leaves_the_old_file_and_no_temp(tmp_path):
    path = atomic_write_text(tmp_path / "gate.json", "old")

    def fail(tmp):
        tmp.write_text("half")
        raise RuntimeError("disk went away")

    with pytest.raises(RuntimeError):
        atomic_write_with(path, fail)
    assert path.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["gate.json"]

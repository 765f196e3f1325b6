"""A checkpoint write that fails for a full disk is one line and exit 2, and keeps the last good checkpoint.

A real full disk is not used: filling a filesystem needs root (a loop device or tmpfs mount) and would
starve the other work sharing this machine. Instead the write itself fails the way it does on a full disk:
``torch.save`` writes part of the file and then raises ``OSError(ENOSPC)`` (what ``write(2)`` gives), or
the RuntimeError torch's zip writer raises for the same failure. Everything around it is real: the atomic
temp file, the stage, the CLI's error mapping.
"""

from __future__ import annotations

import errno
import subprocess
import sys
import textwrap

import pytest
import torch

from cidpipe.errors import UsageError
from cidpipe.training.checkpoint import load_checkpoint, save_checkpoint
from tests.trust.hostile import cidpipe_env, write_recipe

_FAILURES = {
    "oserror-enospc": lambda: OSError(errno.ENOSPC, "No space left on device"),
    "torch-zip-writer": lambda: RuntimeError(
        "[enforce fail at inline_container.cc:603] . PytorchStreamWriter failed writing file data/0: "
        "file write failed"
    ),
}


@pytest.mark.parametrize("failure", sorted(_FAILURES))
def test_a_full_disk_keeps_the_last_checkpoint(tmp_path, monkeypatch, failure):
    path = tmp_path / "checkpoints" / "last.pt"
    save_checkpoint(path, {"epoch": 1})
    real_save = torch.save

    def save_until_the_disk_is_full(obj, target):
        real_save(obj, target)
        with open(target, "r+b") as handle:  # a partial file, as a write that ran out of room leaves
            handle.truncate(10)
        raise _FAILURES[failure]()

    monkeypatch.setattr(torch, "save", save_until_the_disk_is_full)
    with pytest.raises(UsageError) as caught:
        save_checkpoint(path, {"epoch": 2})
    message = str(caught.value)
    assert caught.value.exit_code == 2 and "\n" not in message
    assert str(path) in message and "free space" in message and "--out" in message
    monkeypatch.undo()
    assert load_checkpoint(path)["epoch"] == 1  # the last good one, not the half-written one
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.pt"]  # no temp file left


def test_other_runtime_errors_are_not_renamed(tmp_path, monkeypatch):
    def broken(obj, target):
        raise RuntimeError("a bug, not a full disk")

    monkeypatch.setattr(torch, "save", broken)
    with pytest.raises(RuntimeError, match="a bug"):
        save_checkpoint(tmp_path / "last.pt", {"epoch": 1})


def test_cli_training_on_a_full_disk_is_one_line_exit_2(tmp_path):
    recipe = write_recipe(tmp_path, teacher={"train": {"epochs": 1}})
    # The real CLI in a subprocess whose torch.save fails with ENOSPC for checkpoint files only.
    script = textwrap.dedent(f"""
        import errno, sys, torch
        real_save = torch.save
        def save(obj, target, *args, **kwargs):
            if "checkpoints" in str(target):
                raise OSError(errno.ENOSPC, "No space left on device")
            return real_save(obj, target, *args, **kwargs)
        torch.save = save
        from cidpipe.cli.main import main
        sys.argv = ["cidpipe", "train", {str(recipe)!r}, "--device", "cpu"]
        main()
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=180,
                            env=cidpipe_env())
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    last = [line for line in result.stderr.splitlines() if line.strip()][-1]
    assert last.startswith("error: cannot write checkpoint") and "ENOSPC" in last, last

"""Run dirs a dropped connection could not remove are swept by the next call to the device (real sshd)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from cidpipe.bench.devices.ssh import SshTarget
from cidpipe.bench.devices.workspace import STALE_RUN_DIR_HOURS, make_run_dir, remove_run_dir


def _aged(path: Path, hours: float) -> Path:
    path.mkdir(parents=True)
    (path / "model.onnx").write_bytes(b"x" * 1024)
    then = time.time() - hours * 3600
    os.utime(path, (then, then))
    return path


def test_run_dirs_older_than_a_day_are_swept_and_nothing_else(sshd):
    device = sshd.device(workdir=str(sshd.root / "sweep-workdir"))
    workdir = Path(device.workdir)
    stale = _aged(workdir / "run.stale123", STALE_RUN_DIR_HOURS + 1)
    recent = _aged(workdir / "run.recent45", STALE_RUN_DIR_HOURS - 1)  # another job's, maybe still running
    not_ours = _aged(workdir / "engines", STALE_RUN_DIR_HOURS * 10)  # kept on purpose (TensorRT engines)
    with SshTarget(device) as target:
        target.connect()
        run_dir = make_run_dir(target)
        assert not stale.exists(), "a day-old run dir is debris of a dropped connection"
        assert recent.is_dir() and not_ours.is_dir() and Path(run_dir).is_dir()
        remove_run_dir(target, run_dir)
    assert sorted(p.name for p in workdir.iterdir()) == ["engines", "run.recent45"]

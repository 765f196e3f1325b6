"""Per-run directories on a device: create, upload into, and always remove.

Layout on the device (``workdir`` from devices.yaml, default /tmp/cidpipe)::

    <workdir>/run.XXXXXXXX/   one per bench or build call, removed when the call ends (also on failure);
                              one a dropped connection left behind is swept after 24 hours
    <workdir>/timing.cache    TensorRT timing cache, kept on purpose between runs (faster rebuilds)
    <workdir>/engines/        TensorRT engines built on the device, one per (onnx, flags)
"""

from __future__ import annotations

import logging
import os
import tarfile
import tempfile
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from cidpipe.bench.devices.ssh import SshTarget, last_line
from cidpipe.errors import DeviceError

log = logging.getLogger(__name__)

RUN_DIR_PREFIX = "run."
# A run dir is removed when its call ends; one whose connection dropped first stays (a model and the
# runtime, megabytes on a board's small eMMC). The next call sweeps those older than this: far longer than
# any call (command_timeout_s), so another job's run dir on a shared board is never touched.
STALE_RUN_DIR_HOURS = 24
_MAKE_RUN_DIR = (
    'mkdir -p -- "$1" || exit 1; '
    'find "$1" -mindepth 1 -maxdepth 1 -type d -name "run.*" -mmin "+$2" -exec rm -rf -- {} + 2>/dev/null; '
    'mktemp -d "$1/run.XXXXXXXX"'
)


def make_run_dir(target: SshTarget) -> str:
    """A fresh, unique directory under the device's workdir (``mktemp -d`` on the device); run dirs
    older than STALE_RUN_DIR_HOURS are removed first."""
    workdir = target.device.workdir.rstrip("/")
    stale_minutes = str(STALE_RUN_DIR_HOURS * 60)
    completed = target.run(["sh", "-c", _MAKE_RUN_DIR, "sh", workdir, stale_minutes],
                           what="creating the remote work dir")
    run_dir = completed.stdout.strip()
    if completed.returncode != 0 or not _is_run_dir(target, run_dir):
        detail = last_line(completed.stderr) or "no output"
        raise DeviceError(
            f"cannot create a work dir under {workdir} on {target.device.name}: {detail}; "
            "set workdir in devices.yaml to a writable directory"
        )
    return run_dir


def _is_run_dir(target: SshTarget, path: str) -> bool:
    # Guard for the rm -rf below: only ever remove what make_run_dir made.
    pure = PurePosixPath(path)
    return (
        pure.is_absolute()
        and ".." not in pure.parts
        and str(pure.parent) == target.device.workdir.rstrip("/")
        and pure.name.startswith(RUN_DIR_PREFIX)
    )


def remove_run_dir(target: SshTarget, run_dir: str) -> None:
    """Remove a run dir; never raises (it runs in ``finally`` and must not hide the real error)."""
    if not _is_run_dir(target, run_dir):
        log.warning("not removing %r on %s: not a cidpipe run dir", run_dir, target.device.name)
        return
    try:
        completed = target.run(["rm", "-rf", "--", run_dir], timeout=target.device.connect_timeout_s + 30,
                               what="removing the remote work dir")
        if completed.returncode != 0:
            log.warning("could not remove %s on %s: %s", run_dir, target.device.name,
                        last_line(completed.stderr))
    except DeviceError as exc:
        log.warning("could not remove %s on %s: %s", run_dir, target.device.name, exc)


def upload(target: SshTarget, run_dir: str, files: Iterable[tuple[Path, str]]) -> None:
    """Copy ``(local path, name inside run_dir)`` pairs (files or directories) in ONE tar stream.

    One ssh call however many files (the runtime package has several); tar also keeps the package's
    directory layout. The archive is a local temp file, removed before returning.
    """
    with tempfile.NamedTemporaryFile(prefix="cidpipe-upload-", suffix=".tar") as archive_file:
        with tarfile.open(fileobj=archive_file, mode="w") as archive:
            for local_path, arcname in files:
                if not local_path.exists():
                    raise DeviceError(f"cannot upload {local_path}: it does not exist")
                archive.add(str(local_path), arcname=arcname, filter=_skip_bytecode)
        archive_file.flush()
        archive_file.seek(0)
        size_mb = os.path.getsize(archive_file.name) / 1e6
        # Allow slow links: 1 MB/s minimum on top of the connect budget.
        timeout = target.device.connect_timeout_s + 60 + size_mb
        target.run(["tar", "--no-same-owner", "-xf", "-", "-C", run_dir], stdin=archive_file,
                   timeout=timeout, check=True, what=f"uploading {size_mb:.1f} MB")


def _skip_bytecode(member: tarfile.TarInfo) -> tarfile.TarInfo | None:
    if "__pycache__" in member.name.split("/") or member.name.endswith(".pyc"):
        return None
    member.uid = member.gid = 0
    member.uname = member.gname = ""
    return member

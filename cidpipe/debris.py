"""Clearing what a failed or killed stage left in a run directory, while keeping what a resume needs.

A stage builds in ``runs/<name>/.<dir>.partial-<id>/``; a kill -9 can leave that directory, temp files of
atomic writes (``.<file>.*.tmp``) and a moved-aside old stage (``.<dir>.old-<pid>``). The only thing worth
keeping is resume state: epoch checkpoints under ``checkpoints/`` of a partial directory. Everything else is
garbage, and a partial directory with no checkpoint left is removed whole. The rule looks at what a
directory holds, not at which stage made it, so a new stage needs nothing here.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

CHECKPOINT_DIR = "checkpoints"


def _is_temp(path: Path) -> bool:
    return path.name.startswith(".") and path.name.endswith(".tmp")


def prune_partial(work_dir: Path) -> bool:
    """Remove everything in ``work_dir`` but finished checkpoints; drop it when none is left.

    Returns True when the directory still exists (it holds resume state).
    """
    if not work_dir.is_dir() or work_dir.is_symlink():
        return False
    for path in sorted(work_dir.rglob("*"), reverse=True):
        relative = path.relative_to(work_dir)
        resumable = relative.parts[0] == CHECKPOINT_DIR and path.is_file() and not _is_temp(path)
        if path.is_symlink() or (path.is_file() and not resumable):
            path.unlink()
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()
    if not any(work_dir.iterdir()):
        work_dir.rmdir()
        return False
    return True


@contextlib.contextmanager
def prune_on_error(work_dir: Path, *, enabled: bool = True) -> Iterator[None]:
    """On any failure (Ctrl-C included) prune ``work_dir`` to its resume state, then re-raise."""
    try:
        yield
    except BaseException:
        if enabled and not prune_partial(work_dir):
            # The first stage of a new run failed with nothing to resume: leave no empty run directory.
            with contextlib.suppress(OSError):  # not empty (other stages, a recipe.yaml): it stays
                work_dir.parent.rmdir()
        raise


def sweep_run_dir(run_dir: Path) -> list[str]:
    """Clear the debris of earlier failed or killed stages in ``run_dir``; returns what was removed.

    Not called inside a torchrun launch: the ranks share the run directory and one rank must not sweep
    what another is writing.
    """
    if os.environ.get("WORLD_SIZE", "1") != "1" or not run_dir.is_dir():
        return []
    removed: list[str] = []
    for entry in sorted(run_dir.iterdir()):
        name = entry.name
        if not name.startswith("."):
            for temp in (p for p in entry.rglob(".*.tmp") if p.is_file()) if entry.is_dir() else ():
                temp.unlink()
                removed.append(str(temp.relative_to(run_dir)))
            continue
        if ".old-" in name and entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(name)
        elif ".partial-" in name and entry.is_dir():
            if not prune_partial(entry):
                removed.append(name)
        elif _is_temp(entry) and entry.is_file():
            entry.unlink()
            removed.append(name)
    return removed

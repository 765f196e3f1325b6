"""Cheap checks that a recipe's dataset is there, before anything is trained.

``check_data_available(cfg)`` (defined in cidpipe/data/registry.py, re-exported here) answers what
can be known without loading the dataset: that data.root
exists, is a directory and can be listed, and that the files the dataset kind needs are there and readable
(for IDX files also that their headers agree; a few bytes each). It raises the same one-line DataError
the loader would, just minutes earlier. Each dataset module registers its own check next to its loader
(``register_dataset(name, check=...)``); a dataset without one gets the data.root check.

The helpers below are also what the loaders use, so an unreadable root is one line (exit 3), never a
PermissionError traceback.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from cidpipe.data.config import DataConfig
from cidpipe.data.registry import check_data_available
from cidpipe.errors import DataError

__all__ = ["check_data_available", "check_root", "is_directory", "is_file", "require_directory",
           "require_file"]


def _reason(err: OSError) -> str:
    return err.strerror or type(err).__name__


def require_directory(path: Path, what: str, hint: str) -> Path:
    """``path`` when it is a directory this process can list; else DataError "<what> <path> ...; <hint>"."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        where = "" if path.is_absolute() else f", looked for {path.absolute()}"
        raise DataError(f"{what} {path} is not a directory (it does not exist{where}); {hint}") from None
    except OSError as err:
        raise DataError(f"{what} {path} cannot be accessed ({_reason(err)}); {hint}") from None
    if not stat.S_ISDIR(mode):
        raise DataError(f"{what} {path} is not a directory (it is a file); {hint}") from None
    try:
        # Listing is the real test: permission bits alone say nothing about ACLs, root or network mounts.
        with os.scandir(path) as entries:
            next(entries, None)
    except OSError as err:
        raise DataError(f"{what} {path} cannot be read ({_reason(err)}); {hint}") from None
    return path


def require_file(path: Path, hint: str, max_bytes: int | None = None) -> None:
    """``path`` is a non-empty regular file (at most ``max_bytes``) that can be opened for reading."""
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            raise DataError(f"{path} is not a regular file; {hint}")
        if info.st_size == 0:
            raise DataError(f"{path} is empty (0 bytes); {hint}")
        if max_bytes is not None and info.st_size > max_bytes:
            raise DataError(f"{path} is {info.st_size} bytes, more than this dataset's files can be "
                            f"(limit {max_bytes}); {hint}")
        with open(path, "rb"):
            pass
    except OSError as err:
        raise DataError(f"cannot read {path} ({_reason(err)}); {hint}") from None


def _is_kind(path: Path, test) -> bool:
    try:
        return test(path.stat().st_mode)
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError as err:
        raise DataError(f"cannot access {path} ({_reason(err)}); "
                        "check the permissions of data.root") from None


def is_file(path: Path) -> bool:
    """Path.is_file that reports a permission problem as DataError instead of raising PermissionError."""
    return _is_kind(path, stat.S_ISREG)


def is_directory(path: Path) -> bool:
    """Path.is_dir that reports a permission problem as DataError instead of raising PermissionError."""
    return _is_kind(path, stat.S_ISDIR)


def check_root(cfg: DataConfig) -> None:
    """The check of a dataset without its own: a data.root that is set must be a readable directory."""
    if cfg.root is not None:
        require_directory(Path(cfg.root).expanduser(), "data.root",
                          "set data.root to the dataset's directory")

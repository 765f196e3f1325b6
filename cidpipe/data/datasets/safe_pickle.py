"""Load the CIFAR "python version" pickles without executing arbitrary code.

``pickle.load`` on a downloaded file can run any callable the file names. The CIFAR batches only hold
dicts, lists, str/bytes, ints and uint8 numpy arrays, so the unpickler below resolves exactly the globals
numpy uses to rebuild an array (old and new module paths, protocol 2 and 5 forms) and refuses every
other name, and object-dtype arrays (which could smuggle arbitrary objects) are refused too.
"""

from __future__ import annotations

import functools
import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from cidpipe.errors import DataError


def _plain_dtype(*args: Any) -> np.dtype:
    dtype = np.dtype(*args)
    if dtype.hasobject:
        raise pickle.UnpicklingError("object arrays are not allowed")
    return dtype


@functools.cache
def _allowed_globals() -> dict[tuple[str, str], Any]:
    import codecs

    try:
        from numpy._core.multiarray import _reconstruct
        from numpy._core.numeric import _frombuffer
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]
        from numpy.core.numeric import _frombuffer  # type: ignore[no-redef]

    allowed: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): _plain_dtype,
        # Protocol-2 pickles written by Python 3 encode bytes as _codecs.encode(str, "latin1").
        ("_codecs", "encode"): codecs.encode,
    }
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(module, "_reconstruct")] = _reconstruct
    for module in ("numpy.core.numeric", "numpy._core.numeric"):
        allowed[(module, "_frombuffer")] = _frombuffer
    return allowed


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler whose find_class resolves only numpy's array-rebuilding helpers."""

    def find_class(self, module: str, name: str) -> Any:
        found = _allowed_globals().get((module, name))
        if found is None:
            raise pickle.UnpicklingError(f"global '{module}.{name}' is forbidden")
        return found


def load_restricted_pickle(path: Path) -> Any:
    """Unpickle ``path`` (latin1 for Python 2 strings) with the restricted unpickler; DataError if refused."""
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise DataError(f"cannot read {path}: {err}") from err
    try:
        return RestrictedUnpickler(io.BytesIO(raw), encoding="latin1").load()
    except Exception as err:  # any unpickling failure means the file is not a CIFAR batch
        raise DataError(f"{path} is not a plain CIFAR batch ({err}); re-download the dataset") from err

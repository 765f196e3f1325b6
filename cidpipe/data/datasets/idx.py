"""Reader for the IDX format of (Fashion-)MNIST, plain or gzip-compressed; numpy only, no pickles.

Layout: two zero bytes, a type code (0x08 = uint8), the number of dimensions, then one big-endian
uint32 per dimension, then the values in C order.
"""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np

from cidpipe.errors import DataError

_UINT8 = 0x08
_GZIP_MAGIC = b"\x1f\x8b"


def read_idx(path: Path, expected_ndim: int) -> np.ndarray:
    """Read an IDX file of uint8 values with ``expected_ndim`` dimensions; DataError if it is not one."""
    try:
        raw = path.read_bytes()
        if raw[:2] == _GZIP_MAGIC:
            raw = gzip.decompress(raw)
    except (OSError, EOFError, gzip.BadGzipFile) as err:
        raise DataError(f"cannot read {path}: {err}; replace the file (re-download or reinstall)") from err
    header_size = 4 + 4 * expected_ndim
    if len(raw) < header_size:
        raise DataError(f"{path} is not an IDX file (only {len(raw)} bytes); replace the file")
    zero, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype_code != _UINT8 or ndim != expected_ndim:
        raise DataError(f"{path} is not a uint8 IDX file with {expected_ndim} dimensions "
                        f"(header {raw[:4].hex()}); replace the file")
    shape = struct.unpack(f">{ndim}I", raw[4:header_size])
    expected_bytes = int(np.prod(shape, dtype=np.int64))
    if len(raw) - header_size != expected_bytes:
        raise DataError(f"{path} is truncated or corrupt: header says {shape} = {expected_bytes} bytes, "
                        f"found {len(raw) - header_size}; replace the file")
    return np.frombuffer(raw, dtype=np.uint8, offset=header_size).reshape(shape)


def write_idx(path: Path, array: np.ndarray, *, compress: bool = False) -> None:
    """Write uint8 ``array`` as IDX (used by tests and tools that make small IDX datasets)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    payload = struct.pack(">HBB", 0, _UINT8, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    payload += array.tobytes()
    partial = path.with_name(path.name + ".partial")  # never leave a half-written file under the real name
    partial.write_bytes(gzip.compress(payload, mtime=0) if compress else payload)
    os.replace(partial, path)

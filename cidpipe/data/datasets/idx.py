"""Reader for the IDX format of (Fashion-)MNIST, plain or gzip-compressed; numpy only, no pickles.

Layout: two zero bytes, a type code (0x08 = uint8), the number of dimensions, then one big-endian
uint32 per dimension, then the values in C order.

Files are hostile input: the header decides how much is read, so it is checked first (the product of the
dimensions in Python ints, so it cannot overflow, against ``MAX_IDX_VALUES``), and a gzip file is
decompressed in bounded steps that stop as soon as the output would exceed what the header announced, so a
small "gzip bomb" never expands in memory.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from cidpipe.errors import DataError

_UINT8 = 0x08
_GZIP_MAGIC = b"\x1f\x8b"
# The largest IDX dataset in use (EMNIST ByClass, 698k x 28 x 28) is ~550 MB of values; 1 GiB leaves room
# and refuses headers such as 4e9 x 4e9 before anything is allocated.
MAX_IDX_VALUES = 1 << 30
_CHUNK = 1 << 20


def idx_header_size(ndim: int) -> int:
    return 4 + 4 * ndim


def parse_idx_header(head: bytes, path: Path, expected_ndim: int) -> tuple[int, ...]:
    """The shape announced by the first ``idx_header_size(expected_ndim)`` bytes; DataError if absurd."""
    header_size = idx_header_size(expected_ndim)
    if len(head) < header_size:
        raise DataError(f"{path} is not an IDX file (only {len(head)} bytes); replace the file")
    zero, dtype_code, ndim = struct.unpack(">HBB", head[:4])
    if zero != 0 or dtype_code != _UINT8 or ndim != expected_ndim:
        raise DataError(f"{path} is not a uint8 IDX file with {expected_ndim} dimensions "
                        f"(header {head[:4].hex()}); replace the file")
    shape = struct.unpack(f">{ndim}I", head[4:header_size])
    values = math.prod(shape)
    if values > MAX_IDX_VALUES:
        raise DataError(f"{path}: header announces {shape} = {values} values, more than any IDX dataset "
                        f"(limit {MAX_IDX_VALUES}); replace the file")
    return shape


def _read_plain(path: Path, expected_ndim: int, body: bool = True) -> tuple[tuple[int, ...], bytes]:
    header_size = idx_header_size(expected_ndim)
    with open(path, "rb") as fh:
        shape = parse_idx_header(fh.read(header_size), path, expected_ndim)
        expected = math.prod(shape)
        size = os.fstat(fh.fileno()).st_size - header_size
        if size != expected:
            raise DataError(f"{path} is truncated or corrupt: header says {shape} = {expected} bytes, "
                            f"found {size}; replace the file")
        values = fh.read(expected) if body else b""
    if body and len(values) != expected:
        raise DataError(f"{path} changed while it was read; replace the file")
    return shape, values


class _BoundedGunzip:
    """Decompresses the gzip members of an open file in bounded steps (zlib's max_length)."""

    def __init__(self, fh, path: Path) -> None:
        self.fh, self.path = fh, path
        self.inflate = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)

    def read(self, limit: int) -> bytes:
        """Up to ``limit`` bytes of output, plus one byte more if the stream holds more than that."""
        out = bytearray()
        while len(out) <= limit:
            if self.inflate.eof:
                rest = self.inflate.unused_data or self.fh.read(_CHUNK)
                if len(rest) == 1:
                    rest += self.fh.read(_CHUNK)
                if not rest:
                    break  # the end of the last member: a clean end of file
                if rest[:2] != _GZIP_MAGIC:  # bytes after the last member are not ours to guess at
                    raise DataError(f"{self.path} has data after its gzip stream; replace the file")
                self.inflate = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)  # a further gzip member
                data = rest
            else:
                data = self.inflate.unconsumed_tail or self.fh.read(_CHUNK)
                if not data:
                    raise DataError(f"{self.path} is a truncated gzip file; replace the file")
            # max_length: never more output than is still wanted (+1 to notice excess), whatever the
            # compression ratio; the rest of the input waits in unconsumed_tail.
            out += self.inflate.decompress(data, limit + 1 - len(out))
        return bytes(out)


def _read_gzip(path: Path, expected_ndim: int) -> tuple[tuple[int, ...], bytes]:
    header_size = idx_header_size(expected_ndim)
    with open(path, "rb") as fh:
        stream = _BoundedGunzip(fh, path)
        head = stream.read(header_size)
        shape = parse_idx_header(head[:header_size], path, expected_ndim)
        expected = math.prod(shape)
        body = head[header_size:] + stream.read(expected - max(0, len(head) - header_size))
    if len(body) != expected:
        more = "more" if len(body) > expected else "less"
        raise DataError(f"{path} is truncated or corrupt: header says {shape} = {expected} bytes, the gzip "
                        f"stream holds {more}; replace the file")
    return shape, body


def read_idx(path: Path, expected_ndim: int) -> np.ndarray:
    """Read an IDX file of uint8 values with ``expected_ndim`` dimensions; DataError if it is not one."""
    try:
        with open(path, "rb") as fh:
            magic = fh.read(2)
        reader = _read_gzip if magic == _GZIP_MAGIC else _read_plain
        shape, body = reader(path, expected_ndim)
    except (OSError, EOFError, zlib.error, gzip.BadGzipFile) as err:
        reason = getattr(err, "strerror", None) or err
        raise DataError(f"cannot read {path}: {reason}; replace the file (re-download or reinstall)") from err
    return np.frombuffer(body, dtype=np.uint8).reshape(shape)


def read_idx_shape(path: Path, expected_ndim: int) -> tuple[int, ...]:
    """Only the header's shape, for cheap checks before a run.

    Reads a few bytes (decompressed if needed); for a plain file also checks its size against the header.
    """
    header_size = idx_header_size(expected_ndim)
    try:
        with open(path, "rb") as fh:
            if fh.read(2) == _GZIP_MAGIC:
                fh.seek(0)
                return parse_idx_header(_BoundedGunzip(fh, path).read(header_size)[:header_size], path,
                                        expected_ndim)
        shape, _ = _read_plain(path, expected_ndim, body=False)
        return shape
    except (OSError, EOFError, zlib.error) as err:
        reason = getattr(err, "strerror", None) or err
        raise DataError(f"cannot read {path}: {reason}; replace the file (re-download or reinstall)") from err


def write_idx(path: Path, array: np.ndarray, *, compress: bool = False) -> None:
    """Write uint8 ``array`` as IDX (used by tests and tools that make small IDX datasets)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    payload = struct.pack(">HBB", 0, _UINT8, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    payload += array.tobytes()
    partial = path.with_name(path.name + ".partial")  # never leave a half-written file under the real name
    partial.write_bytes(gzip.compress(payload, mtime=0) if compress else payload)
    os.replace(partial, path)

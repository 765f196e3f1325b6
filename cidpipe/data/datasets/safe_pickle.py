"""Load the CIFAR "python version" pickles without executing arbitrary code or corrupting memory.

``pickle.load`` on a downloaded file can run any callable the file names. The CIFAR batches only hold
dicts, lists, str/bytes, ints and plain numeric numpy arrays, so the unpickler below resolves exactly the
globals numpy uses to rebuild an array (old and new module paths, protocol 2 and 5 forms) and refuses
every other name.

Resolving only harmless names is not enough: numpy's own rebuilding hooks trust their arguments. The
BUILD opcode calls ``dtype.__setstate__`` with whatever field names, offsets, item sizes and flags the file
chose, and a dtype with a field offset past its item size (or the "has objects" flag on plain bytes) makes
later reads of the array touch memory outside it: a segfault, not an exception. ``_reconstruct`` and
``ndarray(...)`` allocate whatever shape they are given. So every opcode that calls something (REDUCE,
BUILD) is checked here before the call, against what numpy itself writes for a plain array:

- a dtype is a builtin bool/int/uint/float one, built as a private copy, and its state may only set the
  byte order (no fields, no subarray, no flags, no metadata);
- an array is rebuilt from ``_reconstruct(ndarray, (0,), b"b")`` plus a state whose shape, dtype and raw
  bytes agree, or from ``_frombuffer`` with the same checks;
- ``_codecs.encode`` only turns a latin1 str into bytes (how protocol 2 stores bytes);
- opcodes that instantiate classes (INST, OBJ, NEWOBJ, ...) or reach outside the file (persistent ids,
  the extension registry) are refused.

That needs per-opcode hooks, which only the pure-Python unpickler (``pickle._Unpickler``) has; it reads a
real 30 MB CIFAR-10 batch in well under a second (the pixels are one bytes opcode).
"""

from __future__ import annotations

import codecs
import functools
import io
import math
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from cidpipe.errors import DataError

# The largest published file (cifar-100-python/train) is 155 MB; refusing anything far beyond that keeps a
# hostile multi-gigabyte "batch" from being read into memory at all.
MAX_PICKLE_BYTES = 512 * 1024 * 1024
# bool, signed and unsigned integers, floats: all a CIFAR batch (uint8 pixels, int labels) can need.
_PLAIN_KINDS = frozenset("biuf")
_MAX_NDIM = 8


class _Refused(pickle.UnpicklingError):
    """The file asked for something a plain CIFAR batch never contains."""


def _check_plain(dtype: Any) -> np.dtype:
    """``dtype`` itself when it is a builtin numeric dtype equal to its own type string, else refused."""
    if not isinstance(dtype, np.dtype):
        raise _Refused(f"expected a numpy dtype, got {type(dtype).__name__}")
    if dtype.hasobject:
        raise _Refused("object arrays are not allowed")
    if (dtype.kind not in _PLAIN_KINDS or dtype.fields is not None or dtype.subdtype is not None
            or dtype.metadata is not None or dtype.flags != 0):
        raise _Refused(f"dtype {dtype.str!r} is not a plain numeric dtype")
    reference = np.dtype(dtype.str)
    if dtype != reference or dtype.itemsize != reference.itemsize or dtype.alignment != reference.alignment:
        raise _Refused(f"dtype {dtype.str!r} does not match its type string")
    return dtype


def _make_dtype(spec: Any, align: Any = False, copy: Any = True) -> np.dtype:
    # numpy pickles a dtype as dtype(typestring, False, True). The copy is forced: BUILD then sets the
    # byte order on this object, and with copy=False it would be numpy's shared builtin int64/uint8/...
    if isinstance(spec, bytes):
        spec = spec.decode("latin1")
    if not isinstance(spec, str) or len(spec) > 8:
        raise _Refused("dtype spec is not a short type string")
    return _check_plain(np.dtype(spec, align=False, copy=True))


def _check_dtype_state(dtype: np.dtype, state: Any) -> None:
    """Refuse a dtype state that would do more than pick a byte order (see the module docstring)."""
    if type(state) is not tuple or not 5 <= len(state) <= 9:
        raise _Refused("malformed dtype state")
    # numpy's layouts by length: 5 (endian, subarray, fields, elsize, alignment), 6 (version first),
    # 7 (+ names before fields), 8 (+ flags), 9 (+ metadata).
    fields = list(state) if len(state) > 5 else [3, *state]
    version, endian, subarray = fields[0], fields[1], fields[2]
    if len(fields) == 6:
        names, rest = None, fields[3:]
    else:
        names, rest = fields[3], fields[4:]
    field_map, elsize, alignment, *tail = rest
    flags = tail[0] if tail else 0
    metadata = tail[1] if len(tail) > 1 else None
    ints = (version, elsize, alignment, flags)
    if (any(type(v) is not int for v in ints) or type(endian) is not str or endian not in ("<", ">", "|", "=")
            or subarray is not None or names is not None or field_map is not None or metadata is not None):
        raise _Refused("a dtype state that defines fields, subarrays or metadata")
    if flags != 0 or elsize not in (-1, dtype.itemsize) or alignment not in (-1, dtype.alignment):
        raise _Refused("a dtype state that sets item sizes or flags")


def _check_shape(shape: Any) -> tuple[int, ...]:
    if (type(shape) is not tuple or len(shape) > _MAX_NDIM
            or any(type(n) is not int or n < 0 for n in shape)):
        raise _Refused("an array shape that is not a short tuple of non-negative ints")
    return shape


def _check_raw_size(shape: tuple[int, ...], dtype: np.dtype, raw: Any) -> None:
    # Python ints: the product cannot overflow, so a huge shape cannot pass with a small buffer.
    expected = math.prod(shape) * dtype.itemsize
    if len(raw) != expected:
        raise _Refused(f"array of shape {shape} {dtype.str} needs {expected} bytes, the file has {len(raw)}")


def _array_state(state: Any) -> None:
    if type(state) is not tuple or len(state) not in (4, 5):
        raise _Refused("malformed array state")
    shape, dtype, is_fortran, raw = state[-4:]
    if len(state) == 5 and type(state[0]) is not int:
        raise _Refused("malformed array state")
    _check_shape(shape)
    _check_plain(dtype)
    if type(is_fortran) not in (bool, int):
        raise _Refused("malformed array state")
    # bytes as numpy writes them; str where a Python 2 file stored them as a latin1 str.
    if type(raw) not in (bytes, str):
        raise _Refused(f"array data is a {type(raw).__name__}, not raw bytes (object arrays are refused)")
    _check_raw_size(shape, dtype, raw)


@functools.cache
def _numpy_helpers() -> tuple[Any, Any]:
    try:
        from numpy._core.multiarray import _reconstruct
        from numpy._core.numeric import _frombuffer
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]
        from numpy.core.numeric import _frombuffer  # type: ignore[no-redef]
    return _reconstruct, _frombuffer


def _reconstruct_empty(subtype: Any, shape: Any, typecode: Any) -> np.ndarray:
    # numpy writes _reconstruct(ndarray, (0,), b"b") and then sets the real shape and data with BUILD;
    # any other arguments would allocate an array of the file's choosing.
    # Types first: comparing a file-made array with == would not give a bool.
    if (subtype is not np.ndarray or type(shape) is not tuple or shape != (0,)
            or type(typecode) not in (bytes, str) or typecode not in (b"b", "b")):
        raise _Refused("array reconstruction with unexpected arguments")
    return _numpy_helpers()[0](np.ndarray, (0,), b"b")


def _frombuffer_checked(buf: Any, dtype: Any, shape: Any, order: Any) -> np.ndarray:
    if type(buf) not in (bytes, bytearray) or type(order) is not str or order not in ("C", "F"):
        raise _Refused("array buffer with unexpected arguments")
    _check_plain(dtype)
    _check_raw_size(_check_shape(shape), dtype, buf)
    return _numpy_helpers()[1](buf, dtype, shape, order)


def _latin1_bytes(text: Any, encoding: Any = "utf-8") -> bytes:
    # Protocol 2 written by Python 3 stores bytes as _codecs.encode(str, "latin1"); other codecs
    # (zlib, bz2, base64, ...) are not what numpy writes and could expand a small file.
    if type(text) is not str or type(encoding) is not str or encoding not in ("latin1", "latin-1"):
        raise _Refused("_codecs.encode is only allowed as str -> latin1 bytes")
    return codecs.encode(text, "latin1")


_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy", "ndarray"): np.ndarray,  # only ever an argument of _reconstruct (REDUCE refuses calling it)
    ("numpy", "dtype"): _make_dtype,
    ("_codecs", "encode"): _latin1_bytes,
    **{(module, "_reconstruct"): _reconstruct_empty
       for module in ("numpy.core.multiarray", "numpy._core.multiarray")},
    **{(module, "_frombuffer"): _frombuffer_checked
       for module in ("numpy.core.numeric", "numpy._core.numeric")},
}
_CALLABLE = frozenset(id(f) for f in (_make_dtype, _latin1_bytes, _reconstruct_empty, _frombuffer_checked))


class RestrictedUnpickler(pickle._Unpickler):  # type: ignore[name-defined,misc]
    """Unpickler that resolves only numpy's array-rebuilding helpers and checks every call they make."""

    dispatch = dict(pickle._Unpickler.dispatch)  # type: ignore[attr-defined]

    def find_class(self, module: str, name: str) -> Any:
        found = _GLOBALS.get((module, name))
        if found is None:
            raise _Refused(f"global '{module}.{name}' is forbidden")
        return found

    def persistent_load(self, pid: Any) -> Any:
        raise _Refused("persistent ids are forbidden")

    def _load_reduce(self) -> None:
        args = self.stack.pop()
        func = self.stack[-1]
        if id(func) not in _CALLABLE or type(args) is not tuple:
            raise _Refused(f"calling {getattr(func, '__name__', type(func).__name__)} is forbidden")
        self.stack[-1] = func(*args)

    def _load_build(self) -> None:
        state = self.stack.pop()
        inst = self.stack[-1]
        if isinstance(inst, np.dtype):
            _check_dtype_state(inst, state)
            inst.__setstate__(state)
            _check_plain(inst)
        elif type(inst) is np.ndarray:
            _array_state(state)
            inst.__setstate__(state)
        else:
            raise _Refused(f"setting the state of a {type(inst).__name__} is forbidden")

    def _refuse(self) -> None:
        raise _Refused("opcodes that create class instances or use the extension registry are forbidden")

    dispatch[pickle.REDUCE[0]] = _load_reduce
    dispatch[pickle.BUILD[0]] = _load_build
    for _opcode in (pickle.INST, pickle.OBJ, pickle.NEWOBJ, pickle.NEWOBJ_EX, pickle.EXT1, pickle.EXT2,
                    pickle.EXT4):
        dispatch[_opcode[0]] = _refuse
    del _opcode


def load_restricted_pickle(path: Path) -> Any:
    """Unpickle ``path`` (latin1 for Python 2 strings) with the restricted unpickler; DataError if refused."""
    try:
        size = path.stat().st_size
        if size > MAX_PICKLE_BYTES:
            raise DataError(f"{path} is {size} bytes, more than any CIFAR batch (limit {MAX_PICKLE_BYTES}); "
                            "replace the file")
        raw = path.read_bytes()
    except OSError as err:
        raise DataError(f"cannot read {path}: {err.strerror or err}; check the file") from err
    try:
        return RestrictedUnpickler(io.BytesIO(raw), encoding="latin1").load()
    except Exception as err:  # any unpickling failure means the file is not a CIFAR batch
        reason = str(err).splitlines()[0][:200] if str(err) else type(err).__name__
        raise DataError(f"{path} is not a plain CIFAR batch ({reason}); re-download the dataset") from err

"""Hostile dataset files (issue 12, "Trust"): every file under data.root is treated as an attack.

Each CLI case writes a small real-format dataset (tests/data/data_fakes.py), damages one file the way an
attacker or a broken download would, runs the real `cidpipe train` in a subprocess (a segfault is exit
139 there, not a dead test run) and asserts the README's promise: the documented exit code, one line
"error: ..." naming what to fix, no traceback, nothing written outside the run directory.

The in-process tests below them pin what the CLI cannot see: memory bounds of the gzip reader, the
availability check ``check_data_available`` and the in-memory size guard. Imports of new API are inside
the tests, so the CLI cases also run against an older checkout.
"""

from __future__ import annotations

import codecs
import os
import pickle
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.conftest import run_cli, tiny_recipe_dict
from tests.data.data_fakes import write_fake_cifar, write_fake_fashion, write_fake_imagefolder
from tests.trust.hostile import (
    assert_clean_failure,
    assert_nothing_outside,
    png_bytes,
    tree_snapshot,
    zero_png,
)

try:
    from numpy._core.multiarray import _reconstruct
except ImportError:  # numpy < 2
    from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]

RUNS = "runs"


def train_fails(tmp_path: Path, data: dict, code: int, needle: str | None = None, *,
                before_training: bool = True) -> str:
    """`cidpipe train` on a one-epoch tiny recipe with ``data``: a clean failure, nothing written outside.

    ``before_training``: the refusal comes before any epoch (no checkpoint exists); files that are only
    decoded when training reads them (images) pass False.
    """
    recipe = tiny_recipe_dict(tmp_path / RUNS, data=data,
                              teacher={"model": {"arch": "tinycnn"}, "train": {"epochs": 1}})
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    home = tmp_path / "home"  # anything written to ~ shows up in the snapshot
    home.mkdir(exist_ok=True)
    before = tree_snapshot(tmp_path, exclude=tmp_path / RUNS)
    result = run_cli("train", str(path), cwd=tmp_path, env={"HOME": str(home)}, timeout=180)
    line = assert_clean_failure(result, code, needle)
    assert_nothing_outside(before, tree_snapshot(tmp_path, exclude=tmp_path / RUNS))
    # A bomb warning is an error, not a line that scrolls by while the bomb is decoded.
    assert "DecompressionBombWarning" not in result.stderr
    if before_training:
        assert not list((tmp_path / RUNS).rglob("*.pt")), "training started on refused data"
    return line


# --------------------------------------------------------------------------------------- CIFAR pickles


class _Dtype:
    """Pickles as numpy.dtype(spec, False, True) + BUILD(state): what numpy writes, with any state."""

    def __init__(self, spec: str, state: tuple) -> None:
        self.spec, self.state = spec, state

    def __reduce__(self):
        return (np.dtype, (self.spec, False, True), self.state)


class _Array:
    """Pickles as _reconstruct(ndarray, (0,), b'b') + BUILD((1, shape, dtype, False, raw)), as numpy does."""

    def __init__(self, shape: tuple, dtype: object, raw: bytes) -> None:
        self.shape, self.dtype, self.raw = shape, dtype, raw

    def __reduce__(self):
        return (_reconstruct, (np.ndarray, (0,), b"b"), (1, self.shape, self.dtype, False, self.raw))


class _Call:
    """Pickles as a call of ``func(*args)``: a global the unpickler allows, used the way numpy never does."""

    def __init__(self, func, *args) -> None:
        self.func, self.args = func, args

    def __reduce__(self):
        return (self.func, self.args)


def _labels_with(dtype: object, n: int) -> _Array:
    return _Array((n,), dtype, b"\0" * (8 * n))


# A structured dtype whose one int64 field sits 1 GiB past the 8-byte item: reading a label reads far
# outside the buffer (SIGSEGV before the fix).
_FIELD_PAST_ITEM = _Dtype("V8", (3, "|", None, ("a",), {"a": (np.dtype("<i8"), 1 << 30)}, 8, 1, 16))
_PAYLOADS = {
    "dtype-field-offset-out-of-bounds": lambda n: {"labels": _labels_with(_FIELD_PAST_ITEM, n)},
    # The same fields smuggled into a plain int64 through its BUILD state.
    "int64-dtype-state-with-fields": lambda n: {"labels": _labels_with(
        _Dtype("i8", (3, "<", None, ("a",), {"a": (np.dtype("<i8"), 1 << 30)}, 8, 1, 16)), n)},
    # The "holds Python objects" flags on raw bytes: numpy would treat the bytes as object pointers.
    "int64-dtype-state-with-object-flags": lambda n: {"labels": _labels_with(
        _Dtype("i8", (3, "<", None, None, None, -1, -1, 63)), n)},
    # numpy.ndarray called directly: an uninitialised array of the file's choosing (memory disclosure).
    "ndarray-called-directly": lambda n: {"data": _Call(np.ndarray, (n, 3072), "u1")},
    "labels-are-strings": lambda n: {"labels": ["cat"] * n},
}
# Payloads that never crashed, only surfaced as exit 1 "unexpected ..." or odd data: checked in-process.
_MORE_PAYLOADS = {
    "labels-are-bools": lambda n: {"labels": [True] * n},
    "labels-beyond-int64": lambda n: {"labels": [1 << 70] * n},
    "labels-2d-array": lambda n: {"labels": np.zeros((n, 2), dtype=np.int64)},
    "data-is-a-list": lambda n: {"data": [[0] * 3072] * n},
    "data-is-float": lambda n: {"data": np.zeros((n, 3072), dtype=np.float32)},
    "bytes-via-a-non-latin1-codec": lambda n: {"data": _Call(codecs.encode, "x" * 64, "rot13")},
    "reconstruct-with-a-huge-shape": lambda n: {"data": _Call(_reconstruct, np.ndarray, (1 << 40,), b"b")},
    "empty-batch": lambda n: {"data": np.zeros((0, 3072), np.uint8), "labels": []},
}


def _poisoned_cifar(tmp_path: Path, payload: dict, batch: str = "data_batch_2") -> Path:
    records = write_fake_cifar(tmp_path / "cifar", "cifar10")
    record = dict(records[batch])
    record.update(payload(len(record["labels"])))
    (tmp_path / "cifar" / "cifar-10-batches-py" / batch).write_bytes(pickle.dumps(record, protocol=2))
    return tmp_path / "cifar"


@pytest.mark.parametrize("payload", sorted(_PAYLOADS))
def test_malicious_cifar_batch_is_one_line_exit_3(tmp_path: Path, payload: str) -> None:
    root = _poisoned_cifar(tmp_path, _PAYLOADS[payload])
    line = train_fails(tmp_path, {"name": "cifar10", "root": str(root)}, 3, "data_batch_2")
    assert "re-download" in line


@pytest.mark.parametrize("payload", sorted(_MORE_PAYLOADS))
def test_odd_cifar_batch_is_a_data_error(tmp_path: Path, payload: str) -> None:
    from cidpipe.data import DataConfig, load_dataset
    from cidpipe.errors import DataError

    root = _poisoned_cifar(tmp_path, _MORE_PAYLOADS[payload])
    with pytest.raises(DataError, match="data_batch_2") as info:
        load_dataset(DataConfig(name="cifar10", root=root))
    assert "\n" not in str(info.value)


def test_cifar_label_outside_the_classes_names_the_batch(tmp_path: Path) -> None:
    records = write_fake_cifar(tmp_path / "cifar", "cifar10")
    record = dict(records["data_batch_4"], labels=[10] + records["data_batch_4"]["labels"][1:])
    batch = tmp_path / "cifar" / "cifar-10-batches-py" / "data_batch_4"
    batch.write_bytes(pickle.dumps(record, protocol=2))
    line = train_fails(tmp_path, {"name": "cifar10", "root": str(tmp_path / "cifar")}, 3, "data_batch_4")
    assert "10 classes" in line


def _bad_meta(tmp_path: Path, names: object) -> Path:
    write_fake_cifar(tmp_path / "cifar", "cifar10")
    meta = tmp_path / "cifar" / "cifar-10-batches-py" / "batches.meta"
    meta.write_bytes(pickle.dumps({"label_names": names}, protocol=2))
    return tmp_path / "cifar"


def test_cifar_meta_that_is_not_a_name_list_is_exit_3(tmp_path: Path) -> None:
    train_fails(tmp_path, {"name": "cifar10", "root": str(_bad_meta(tmp_path, 7))}, 3, "batches.meta")


@pytest.mark.parametrize("names", [["a"] * 5, [b"x" * 10_000] * 10, [b"ok"] * 9 + [3]],
                         ids=["five-names", "huge-names", "an-int-name"])
def test_cifar_meta_with_bad_class_names(tmp_path: Path, names: object) -> None:
    from cidpipe.data import DataConfig, load_dataset
    from cidpipe.errors import DataError

    with pytest.raises(DataError, match="batches.meta"):
        load_dataset(DataConfig(name="cifar10", root=_bad_meta(tmp_path, names)))


def test_plain_cifar_variants_still_load(tmp_path: Path) -> None:
    """The checks refuse only what numpy never writes: byte orders and protocols 0-5 still load."""
    from cidpipe.data.datasets.safe_pickle import load_restricted_pickle

    record = {"data": np.arange(6, dtype=np.uint8).reshape(2, 3), "labels": np.array([1, 2], dtype=">i4"),
              "little": np.array([1.5], dtype="<f8"), "flags": np.array([True, False])}
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        path = tmp_path / f"p{protocol}"
        path.write_bytes(pickle.dumps(record, protocol=protocol))
        loaded, reference = load_restricted_pickle(path), pickle.loads(path.read_bytes())
        for key, value in record.items():
            np.testing.assert_array_equal(loaded[key], value)
            assert loaded[key].dtype == reference[key].dtype
    # The byte-order change through BUILD must not leak into numpy's shared builtin dtype.
    assert np.dtype("i4").byteorder == "="


# --------------------------------------------------------------------------------------- image folders


def _truncated_png() -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.int64).astype(np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()[: len(buffer.getvalue()) // 2]


_IMAGES = {
    # PIL only warns between 89 M and 179 M pixels; 10 000 x 10 000 decodes to 300 MB of RGB.
    "bomb-in-pil-warning-range": (lambda: zero_png(10_000), "too large"),
    # Beyond PIL's own error limit: DecompressionBombError, not an OSError.
    "bomb-beyond-pil-limit": (lambda: png_bytes(20_000, 20_000, zlib.compress(b"\0" * 64)), "too large"),
    # Below PIL's limits but above cidpipe's 8192 x 8192.
    "bomb-above-cidpipe-limit": (lambda: png_bytes(9_000, 9_000, zlib.compress(b"\0" * 64)), "9000x9000"),
    "truncated-png": (_truncated_png, "img000.png"),
    "text-with-jpg-suffix": (lambda: b"this is not an image\n" * 10, "img000"),
    # PostScript is identified by content; PIL would hand it to Ghostscript. Not one of our formats.
    "postscript-with-png-suffix": (lambda: b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\nshowpage\n",
                                   "cannot identify"),
    "zero-byte-file": (lambda: b"", "0 bytes"),
}


@pytest.mark.parametrize("kind", sorted(_IMAGES))
def test_hostile_image_file_is_one_line_exit_3(tmp_path: Path, kind: str) -> None:
    root = tmp_path / "folder"
    write_fake_imagefolder(root / "train", per_class=6)
    write_fake_imagefolder(root / "test", per_class=2, seed=1)
    make, needle = _IMAGES[kind]
    suffix = ".jpg" if kind.startswith("text") else ".png"
    # The same file in every training class, so it is in the training split whatever the seed.
    content = make()
    for cls in ("cat", "dog", "owl"):
        (root / "train" / cls / "img000.png").unlink()
        (root / "train" / cls / f"img000{suffix}").write_bytes(content)
    line = train_fails(tmp_path, {"name": "imagefolder", "root": str(root)}, 3, needle, before_training=False)
    assert "img000" in line


def test_decode_image_is_bounded_for_every_caller(tmp_path: Path) -> None:
    """The helper other readers of user images (calibration) can share: shapes, modes, the bomb bound."""
    from PIL import Image

    from cidpipe.data.folder_split import decode_image
    from cidpipe.errors import DataError

    Image.fromarray(np.full((10, 12, 3), 200, np.uint8)).save(tmp_path / "ok.png")
    assert decode_image(tmp_path / "ok.png", 16).shape == (16, 16, 3)
    assert decode_image(tmp_path / "ok.png", (8, 20), mode="L").shape == (8, 20)
    (tmp_path / "bomb.png").write_bytes(png_bytes(9_000, 9_000, zlib.compress(b"\0" * 64)))
    with pytest.raises(DataError, match="bomb.png is 9000x9000 pixels"):
        decode_image(tmp_path / "bomb.png", 16)


# ------------------------------------------------------------------------------------------- IDX files


def _idx_header(*shape: int) -> bytes:
    return struct.pack(">HBB", 0, 8, len(shape)) + struct.pack(f">{len(shape)}I", *shape)


def _idx(array: np.ndarray) -> bytes:
    return _idx_header(*array.shape) + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def _gzip_bomb(header: bytes, zeros: int) -> bytes:
    """gzip of ``header`` + ``zeros`` zero bytes, compressed piece by piece (never held whole)."""
    deflate = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    parts, block = [deflate.compress(header)], bytes(1 << 20)
    for _ in range(zeros >> 20):
        parts.append(deflate.compress(block))
    return b"".join(parts) + deflate.flush()


_IDX_DAMAGE = {
    # 2^31 * 2^31 * 4 = 2^64 wraps to 0 in int64: the old check accepted a header-only file.
    "dimension-product-overflows": ("t10k-images-idx3-ubyte", lambda a: _idx_header(1 << 31, 1 << 31, 4),
                                    "limit"),
    "absurd-image-count": ("t10k-images-idx3-ubyte", lambda a: _idx_header(4_000_000_000, 28, 28), "limit"),
    # A 64 MB stream of zeros behind a header announcing 100 images (~60 kB of gzip).
    "gzip-bomb": ("train-images-idx3-ubyte.gz", lambda a: _gzip_bomb(_idx_header(100, 28, 28), 64 << 20),
                  "holds more"),
    "label-outside-the-classes": ("t10k-labels-idx1-ubyte",
                                  lambda a: _idx(np.r_[np.uint8(10), a["t10k_labels"][1:]]),
                                  "t10k-labels-idx1-ubyte"),
    "fewer-labels-than-images": ("t10k-labels-idx1-ubyte", lambda a: _idx(a["t10k_labels"][:-1]),
                                 "40 images but 39 labels"),
    "images-not-28x28": ("t10k-images-idx3-ubyte", lambda a: _idx(np.zeros((40, 1, 1), np.uint8)),
                         "28, 28"),
    "truncated-body": ("t10k-images-idx3-ubyte", lambda a: _idx(a["t10k_images"])[:-100], "truncated"),
}


@pytest.mark.parametrize("damage", sorted(set(_IDX_DAMAGE) - {"truncated-body"}))  # tests/data has that
def test_hostile_idx_file_is_one_line_exit_3(tmp_path: Path, damage: str) -> None:
    root = tmp_path / "fashion"
    arrays = write_fake_fashion(root, 100, 40)
    name, make, needle = _IDX_DAMAGE[damage]
    (root / name).write_bytes(make(arrays))
    train_fails(tmp_path, {"name": "fashion-mnist", "root": str(root)}, 3, needle)


def test_gzip_bomb_is_never_expanded_in_memory(tmp_path: Path) -> None:
    import tracemalloc

    from cidpipe.data.datasets.idx import read_idx
    from cidpipe.errors import DataError

    path = tmp_path / "bomb.gz"
    path.write_bytes(_gzip_bomb(_idx_header(100, 28, 28), 64 << 20))
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match="holds more"):
            read_idx(path, 3)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, f"decompressing used {peak} bytes for a 78 kB dataset"


def test_gzip_reader_handles_real_layouts(tmp_path: Path) -> None:
    """Bounded reading still reads every legal file: multi-member gzip, and chunk-sized payloads."""
    from cidpipe.data.datasets.idx import read_idx

    array = np.random.default_rng(0).integers(0, 256, (300, 28, 28), dtype=np.int64).astype(np.uint8)
    payload = _idx(array)
    import gzip

    path = tmp_path / "multi.gz"
    path.write_bytes(gzip.compress(payload[:5000]) + gzip.compress(payload[5000:]))
    np.testing.assert_array_equal(read_idx(path, 3), array)
    path.write_bytes(gzip.compress(payload) + b"junk")
    from cidpipe.errors import DataError

    with pytest.raises(DataError, match="after its gzip stream"):
        read_idx(path, 3)


# ------------------------------------------------------------------------------------ data.input_size


@pytest.mark.parametrize("size", [0, 10**6])
def test_absurd_input_size_is_a_recipe_error(tmp_path: Path, size: int) -> None:
    # 0 used to mean "the default" silently; 10^6 used to die in the allocator.
    train_fails(tmp_path, {"name": "digits", "input_size": size}, 2, "input_size")


@pytest.mark.parametrize("size", [-3, 7, 4097])
def test_input_size_bounds(size: int) -> None:
    from pydantic import ValidationError

    from cidpipe.data import DataConfig

    with pytest.raises(ValidationError, match="input_size"):
        DataConfig(name="digits", input_size=size)
    for fine in (8, 224, 4096):
        assert DataConfig(name="digits", input_size=fine).input_size == fine


def test_input_size_that_cannot_fit_in_memory_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from cidpipe.data import DataConfig, load_dataset, splitting
    from cidpipe.errors import ConfigError

    # digits at 64 px is ~22 MB; pretend the machine has 16 MB rather than allocating terabytes for real.
    monkeypatch.setattr(splitting, "_physical_memory", lambda: 16 << 20)
    with pytest.raises(ConfigError, match="lower data.input_size"):
        load_dataset(DataConfig(name="digits", input_size=64))


# ------------------------------------------------------------------------------------------- data.root


def _root_for(name: str, tmp_path: Path) -> dict:
    return {"name": name, "root": str(tmp_path / "nowhere")}


@pytest.mark.parametrize("name", ["fashion-mnist", "cifar10", "imagefolder"])
def test_missing_root_is_exit_3_naming_it(tmp_path: Path, name: str) -> None:
    train_fails(tmp_path, _root_for(name, tmp_path), 3, str(tmp_path / "nowhere"))


@pytest.mark.parametrize("name", ["fashion-mnist", "cifar10", "imagefolder"])
def test_root_that_is_a_file_is_exit_3(tmp_path: Path, name: str) -> None:
    (tmp_path / "nowhere").write_text("a file, not a dataset\n")
    train_fails(tmp_path, _root_for(name, tmp_path), 3, "not a directory")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any directory whatever its mode")
@pytest.mark.parametrize("name", ["fashion-mnist", "cifar10", "imagefolder"])
def test_unreadable_root_is_exit_3(tmp_path: Path, name: str) -> None:
    (tmp_path / "nowhere").mkdir()
    (tmp_path / "nowhere").chmod(0)
    try:
        train_fails(tmp_path, _root_for(name, tmp_path), 3, "cannot be read")
    finally:
        (tmp_path / "nowhere").chmod(0o755)


# ------------------------------------------------------------------------------------------- preflight


@pytest.fixture
def good_roots(tmp_path: Path) -> dict[str, Path]:
    write_fake_fashion(tmp_path / "fashion", 50, 20)
    write_fake_cifar(tmp_path / "cifar", "cifar10")
    write_fake_imagefolder(tmp_path / "folder", per_class=3)
    return {"fashion-mnist": tmp_path / "fashion", "cifar10": tmp_path / "cifar",
            "imagefolder": tmp_path / "folder"}


def _check(name: str, root: Path | None = None, **extra: object) -> None:
    from cidpipe.data import DataConfig, check_data_available

    check_data_available(DataConfig(name=name, root=root, **extra))


def test_preflight_passes_good_data_and_digits(good_roots: dict[str, Path], tmp_path: Path) -> None:
    for name, root in good_roots.items():
        _check(name, root)
    _check("digits")
    _check("digits", tmp_path / "nowhere")  # digits does not use data.root
    # With download allowed, a missing dataset is the loader's to fetch.
    _check("fashion-mnist", tmp_path / "empty-download-target", download=True)
    _check("cifar10", tmp_path / "empty-download-target", download=True)


@pytest.mark.parametrize("name", ["fashion-mnist", "cifar10", "cifar100", "imagefolder"])
def test_preflight_refuses_missing_and_file_roots(tmp_path: Path, name: str) -> None:
    from cidpipe.errors import DataError

    with pytest.raises(DataError, match="does not exist"):
        _check(name, tmp_path / "nowhere")
    (tmp_path / "file").write_text("x")
    with pytest.raises(DataError, match="not a directory"):
        _check(name, tmp_path / "file")


def test_preflight_refuses_an_unlistable_root(good_roots: dict[str, Path], monkeypatch) -> None:
    from cidpipe.errors import DataError

    real_scandir = os.scandir

    def denied(path=".", *args):
        if Path(path) == good_roots["cifar10"]:
            raise PermissionError(13, "Permission denied")
        return real_scandir(path, *args)

    monkeypatch.setattr(os, "scandir", denied)
    with pytest.raises(DataError, match="cannot be read .Permission denied"):
        _check("cifar10", good_roots["cifar10"])


@pytest.mark.parametrize("damage", ["missing", "empty", "directory"])
def test_preflight_names_the_bad_cifar_file(good_roots: dict[str, Path], damage: str) -> None:
    from cidpipe.errors import DataError

    path = good_roots["cifar10"] / "cifar-10-batches-py" / "test_batch"
    path.unlink()
    if damage == "empty":
        path.write_bytes(b"")
    elif damage == "directory":
        path.mkdir()
    with pytest.raises(DataError, match="test_batch"):
        _check("cifar10", good_roots["cifar10"])


@pytest.mark.parametrize("damage", sorted(set(_IDX_DAMAGE) - {"label-outside-the-classes", "gzip-bomb"}))
def test_preflight_reads_idx_headers(good_roots: dict[str, Path], damage: str) -> None:
    """Header-level damage is found from a few bytes per file (labels and bombs need the body)."""
    from cidpipe.errors import DataError

    root = good_roots["fashion-mnist"]
    arrays = write_fake_fashion(root, 100, 40)
    name, make, needle = _IDX_DAMAGE[damage]
    (root / name).write_bytes(make(arrays))
    with pytest.raises(DataError, match=needle.replace("[", r"\[")):
        _check("fashion-mnist", root)


def test_preflight_imagefolder_layout(tmp_path: Path) -> None:
    from cidpipe.errors import DataError

    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no class folders"):
        _check("imagefolder", tmp_path / "empty")
    (tmp_path / "noimages" / "cat").mkdir(parents=True)
    (tmp_path / "noimages" / "cat" / "notes.txt").write_text("x")
    with pytest.raises(DataError, match="no images"):
        _check("imagefolder", tmp_path / "noimages")
    write_fake_imagefolder(tmp_path / "split" / "train", classes=("cat",), per_class=2)
    write_fake_imagefolder(tmp_path / "split" / "test", classes=("cat", "yak"), per_class=1)
    with pytest.raises(DataError, match="yak is a class not present"):
        _check("imagefolder", tmp_path / "split")
    with pytest.raises(DataError, match="data.root is required"):
        _check("imagefolder")


def test_preflight_unknown_dataset_is_a_config_error() -> None:
    from cidpipe.errors import ConfigError

    with pytest.raises(ConfigError, match="did you mean 'cifar10'"):
        _check("cifar1O")

"""``cifar10`` / ``cifar100``: the "python version" archives as torchvision stores them on disk.

data.root (default ~/.cache/cidpipe/datasets) holds ``cifar-10-batches-py/`` (data_batch_1..5, test_batch,
batches.meta) or ``cifar-100-python/`` (train, test, meta); data.root may also be that folder itself.
The pickles are read by a restricted unpickler (safe_pickle.py), never ``pickle.load``. With
data.download: true a missing archive is fetched and md5-checked with torchvision's download helper.
Horizontal flips are on by default (the standard CIFAR recipe: RandomCrop(32, 4) + flip).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from cidpipe.data.base import DatasetBundle
from cidpipe.data.config import DataConfig
from cidpipe.data.datasets.safe_pickle import MAX_PICKLE_BYTES, load_restricted_pickle
from cidpipe.data.preflight import is_file, require_directory, require_file
from cidpipe.data.registry import register_dataset
from cidpipe.data.splitting import tensor_bundle
from cidpipe.errors import DataError

CIFAR_DEFAULT_ROOT = Path("~/.cache/cidpipe/datasets").expanduser()
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN = (0.5071, 0.4867, 0.4408)
CIFAR100_STD = (0.2675, 0.2565, 0.2761)

# name -> (folder, train files, test file, meta file, label key, label-names key, torchvision class)
_LAYOUTS: dict[str, tuple[str, list[str], str, str, str, str, str]] = {
    "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], "test_batch",
                "batches.meta", "labels", "label_names", "CIFAR10"),
    "cifar100": ("cifar-100-python", ["train"], "test", "meta", "fine_labels", "fine_label_names",
                 "CIFAR100"),
}
_NUM_CLASSES = {"cifar10": 10, "cifar100": 100}
_MAX_CLASS_NAME = 256


def _text_keys(record: Any, path: Path) -> dict[str, Any]:
    if not isinstance(record, dict):
        raise DataError(f"{path} does not hold a dict as a CIFAR batch does; re-download the dataset")
    return {k.decode("latin1") if isinstance(k, bytes) else str(k): v for k, v in record.items()}


def _labels_array(values: Any, path: Path, label_key: str) -> np.ndarray:
    """The batch's labels as int64 [N]: a list of ints (the published files) or an integer array."""
    if isinstance(values, list | tuple):
        # bool is an int subclass, and a Python int can be too large for int64: refuse both up front.
        if not all(type(v) is int and -(2**63) <= v < 2**63 for v in values):
            raise DataError(f"{path}: '{label_key}' is not a list of integers; re-download the dataset")
        return np.asarray(values, dtype=np.int64).reshape(-1)
    if type(values) is np.ndarray and values.dtype.kind in "iu" and values.ndim == 1:
        return values.astype(np.int64)
    raise DataError(f"{path}: '{label_key}' is a {type(values).__name__}, not a list of integers; "
                    "re-download the dataset")


def read_cifar_batch(path: Path, label_key: str, num_classes: int | None = None
                     ) -> tuple[np.ndarray, np.ndarray]:
    """One batch file -> uint8 images [N,3,32,32] and int64 labels (in 0..num_classes-1 when given)."""
    record = _text_keys(load_restricted_pickle(path), path)
    if "data" not in record or label_key not in record:
        raise DataError(f"{path} lacks 'data' or '{label_key}'; is it the right CIFAR variant?")
    data = record["data"]
    # The unpickler only lets plain numeric arrays through; still check exactly what the rest relies on
    # (an ndarray, not a list numpy would have to convert, of uint8 rows of 3072 pixels).
    if type(data) is not np.ndarray:
        raise DataError(f"{path}: 'data' is a {type(data).__name__}, not a uint8 array; "
                        "re-download the dataset")
    labels = _labels_array(record[label_key], path, label_key)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(data) != len(labels):
        raise DataError(f"{path}: expected uint8 data [N, 3072] with N labels, got {data.dtype} "
                        f"{data.shape} and {labels.shape}; re-download the dataset")
    if len(data) == 0:
        raise DataError(f"{path} holds no images; re-download the dataset")
    if num_classes is not None and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(f"{path}: labels {int(labels.min())}..{int(labels.max())} outside the "
                        f"{num_classes} classes 0..{num_classes - 1}; re-download the dataset")
    # Rows are the red plane, then green, then blue, each 32x32 row-major: exactly NCHW.
    return data.reshape(-1, 3, 32, 32), labels


def read_class_names(path: Path, names_key: str, expected: int) -> list[str]:
    """The ``expected`` class names of a meta file (bytes in Python 2 files, str in newer ones)."""
    meta = _text_keys(load_restricted_pickle(path), path)
    names = meta.get(names_key)
    if not isinstance(names, list | tuple) or not names:
        raise DataError(f"{path} lacks '{names_key}'; re-download the dataset")
    decoded = []
    for name in names:
        if isinstance(name, bytes):
            name = name.decode("utf-8", errors="replace")
        # A class name ends up in manifests, reports and the ONNX metadata: a short str.
        if not isinstance(name, str) or len(name) > _MAX_CLASS_NAME:
            raise DataError(f"{path}: '{names_key}' holds something other than short names; "
                            "re-download the dataset")
        decoded.append(name)
    if len(decoded) != expected:
        raise DataError(f"{path}: {len(decoded)} names in '{names_key}', expected {expected}; "
                        "is it the right CIFAR variant?")
    return decoded


def _folder(root: Path, folder_name: str) -> Path:
    return root if root.name == folder_name else root / folder_name


def _download(name: str, root: Path) -> None:
    try:
        import torchvision.datasets as tvd
        from torchvision.datasets.utils import download_and_extract_archive
    except ImportError as err:  # pragma: no cover - torchvision is a dependency
        raise DataError("data.download needs torchvision; pip install torchvision") from err
    source = getattr(tvd, _LAYOUTS[name][6])
    try:
        download_and_extract_archive(source.url, str(root), filename=source.filename, md5=source.tgz_md5)
    except Exception as err:  # network/IO problems surface as many exception types
        raise DataError(f"downloading {name} to {root} failed: {err}; "
                        "place the extracted archive there") from err


def _locate(cfg: DataConfig, name: str) -> tuple[Path, Path, list[str], list[str]]:
    """(root, batch folder, expected files, missing files); an explicit data.root must be readable."""
    folder_name, train_files, test_file, meta_file, *_ = _LAYOUTS[name]
    root = Path(cfg.root).expanduser() if cfg.root is not None else CIFAR_DEFAULT_ROOT
    if cfg.root is not None and not (cfg.download and not root.exists()):  # download creates a missing root
        require_directory(root, "data.root", f"set data.root to the directory holding {folder_name}/ "
                          "or set data.download: true")
    folder = _folder(root, folder_name)
    expected = [*train_files, test_file, meta_file]
    return root, folder, expected, [f for f in expected if not is_file(folder / f)]


def _not_found(name: str, folder: Path, expected: list[str], missing: list[str]) -> DataError:
    return DataError(f"{name} not found: expected {folder}/ with {', '.join(expected)} (missing "
                     f"{', '.join(missing)}); extract the 'python version' archive there, set data.root, "
                     "or set data.download: true")


def check_cifar_available(cfg: DataConfig, name: str) -> None:
    """Every batch file is there, readable, not empty and not absurdly large (no unpickling)."""
    _, folder, expected, missing = _locate(cfg, name)
    if missing:
        if cfg.download:
            return
        raise _not_found(name, folder, expected, missing)
    for file in expected:
        require_file(folder / file, "re-download the dataset", max_bytes=MAX_PICKLE_BYTES)


def _load_cifar(cfg: DataConfig, name: str, mean: tuple[float, ...], std: tuple[float, ...]) -> DatasetBundle:
    folder_name, train_files, test_file, meta_file, label_key, names_key, _ = _LAYOUTS[name]
    root, folder, expected, missing = _locate(cfg, name)
    if missing and cfg.download:
        _download(name, root if root.name != folder_name else root.parent)
        missing = [f for f in expected if not is_file(folder / f)]
    if missing:
        raise _not_found(name, folder, expected, missing)
    # The class names first: they fix the label range every batch is checked against.
    class_names = read_class_names(folder / meta_file, names_key, _NUM_CLASSES[name])
    parts = [read_cifar_batch(folder / f, label_key, len(class_names)) for f in train_files]
    train_x = np.concatenate([p[0] for p in parts])
    train_y = np.concatenate([p[1] for p in parts])
    test_x, test_y = read_cifar_batch(folder / test_file, label_key, len(class_names))
    return tensor_bundle(cfg, name=name, class_names=class_names, mean=mean, std=std,
                         train_images=train_x, train_labels=train_y, test_images=test_x, test_labels=test_y,
                         hflip_default=True, provenance={"source": str(folder)})


@register_dataset("cifar10", check=lambda cfg: check_cifar_available(cfg, "cifar10"), classes=10)
def load_cifar10_bundle(cfg: DataConfig) -> DatasetBundle:
    return _load_cifar(cfg, "cifar10", CIFAR10_MEAN, CIFAR10_STD)


@register_dataset("cifar100", check=lambda cfg: check_cifar_available(cfg, "cifar100"), classes=100)
def load_cifar100_bundle(cfg: DataConfig) -> DatasetBundle:
    return _load_cifar(cfg, "cifar100", CIFAR100_MEAN, CIFAR100_STD)

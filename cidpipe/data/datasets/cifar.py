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
from cidpipe.data.datasets.safe_pickle import load_restricted_pickle
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


def _text_keys(record: Any, path: Path) -> dict[str, Any]:
    if not isinstance(record, dict):
        raise DataError(f"{path} does not hold a dict as a CIFAR batch does; re-download the dataset")
    return {k.decode("latin1") if isinstance(k, bytes) else str(k): v for k, v in record.items()}


def read_cifar_batch(path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    """One batch file -> uint8 images [N,3,32,32] and int64 labels."""
    record = _text_keys(load_restricted_pickle(path), path)
    if "data" not in record or label_key not in record:
        raise DataError(f"{path} lacks 'data' or '{label_key}'; is it the right CIFAR variant?")
    data = np.asarray(record["data"])
    labels = np.asarray(record[label_key], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(data) != len(labels):
        raise DataError(f"{path}: expected uint8 data [N, 3072] with N labels, got {data.dtype} "
                        f"{data.shape} and {labels.shape}; re-download the dataset")
    # Rows are the red plane, then green, then blue, each 32x32 row-major: exactly NCHW.
    return data.reshape(-1, 3, 32, 32), labels


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


def _load_cifar(cfg: DataConfig, name: str, mean: tuple[float, ...], std: tuple[float, ...]) -> DatasetBundle:
    folder_name, train_files, test_file, meta_file, label_key, names_key, _ = _LAYOUTS[name]
    root = Path(cfg.root).expanduser() if cfg.root is not None else CIFAR_DEFAULT_ROOT
    folder = _folder(root, folder_name)
    expected = [*train_files, test_file, meta_file]
    if not all((folder / f).is_file() for f in expected) and cfg.download:
        _download(name, root if root.name != folder_name else root.parent)
    missing = [f for f in expected if not (folder / f).is_file()]
    if missing:
        raise DataError(f"{name} not found: expected {folder}/ with {', '.join(expected)} (missing "
                        f"{', '.join(missing)}); extract the 'python version' archive there, set data.root, "
                        "or set data.download: true")
    parts = [read_cifar_batch(folder / f, label_key) for f in train_files]
    train_x = np.concatenate([p[0] for p in parts])
    train_y = np.concatenate([p[1] for p in parts])
    test_x, test_y = read_cifar_batch(folder / test_file, label_key)
    meta = _text_keys(load_restricted_pickle(folder / meta_file), folder / meta_file)
    class_names = [n.decode() if isinstance(n, bytes) else str(n) for n in meta.get(names_key, [])]
    if not class_names:
        raise DataError(f"{folder / meta_file} lacks '{names_key}'; re-download the dataset")
    return tensor_bundle(cfg, name=name, class_names=class_names, mean=mean, std=std,
                         train_images=train_x, train_labels=train_y, test_images=test_x, test_labels=test_y,
                         hflip_default=True, provenance={"source": str(folder)})


@register_dataset("cifar10")
def load_cifar10_bundle(cfg: DataConfig) -> DatasetBundle:
    return _load_cifar(cfg, "cifar10", CIFAR10_MEAN, CIFAR10_STD)


@register_dataset("cifar100")
def load_cifar100_bundle(cfg: DataConfig) -> DatasetBundle:
    return _load_cifar(cfg, "cifar100", CIFAR100_MEAN, CIFAR100_STD)

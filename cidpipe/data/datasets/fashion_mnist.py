"""``fashion-mnist``: Zalando's 70 000 28x28 grayscale clothes (60 000 train, 10 000 test), IDX files.

Looked up in data.root (default: the Debian package dataset-fashion-mnist's /usr/share/datasets/
fashion-mnist), also under <root>/FashionMNIST/raw as torchvision stores them; ``.gz`` or plain.
Images are zero-padded 28 -> 32 (2 px each side, so the 32x32 CIFAR models apply) and replicated to three
channels (RGB models and the colour bias work). Horizontal flips are on by default: a mirrored garment is
the same garment, and flips are common in Fashion-MNIST recipes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cidpipe.data.base import DatasetBundle
from cidpipe.data.config import DataConfig
from cidpipe.data.datasets.idx import read_idx, read_idx_shape
from cidpipe.data.preflight import is_file, require_directory, require_file
from cidpipe.data.registry import register_dataset
from cidpipe.data.splitting import tensor_bundle
from cidpipe.errors import DataError

FASHION_MNIST_DEBIAN_ROOT = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_DOWNLOAD_ROOT = Path("~/.cache/cidpipe/datasets").expanduser()
FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
FASHION_MNIST_PAD = 2
FASHION_MNIST_SIDE = 28
# Mean/std (x/255) of the 60 000 training images after the 2 px zero padding to 32x32, all channels
# equal; the 28x28 figures usually quoted (0.2860 / 0.3530) do not apply to the padded images.
FASHION_MNIST_MEAN = (0.2190, 0.2190, 0.2190)
FASHION_MNIST_STD = (0.3318, 0.3318, 0.3318)
_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


_NOT_FOUND_HINT = "run `apt-get install dataset-fashion-mnist`, set data.root, or set data.download: true"


def _find(directory: Path, stem: str) -> Path | None:
    for candidate in (directory / stem, directory / f"{stem}.gz"):
        if is_file(candidate):
            return candidate
    return None


def locate_fashion_mnist(root: Path) -> dict[str, Path] | None:
    """The four IDX files under ``root`` (or its torchvision layout), None when any is missing."""
    for directory in (root, root / "FashionMNIST" / "raw"):
        found = {key: _find(directory, stem) for key, stem in _FILES.items()}
        if all(found.values()):
            return found  # type: ignore[return-value]
    return None


def _download(root: Path) -> None:
    try:
        from torchvision.datasets import FashionMNIST
    except ImportError as err:  # pragma: no cover - torchvision is a dependency
        raise DataError("data.download needs torchvision; pip install torchvision") from err
    try:
        FashionMNIST(root=str(root), train=True, download=True)
        FashionMNIST(root=str(root), train=False, download=True)
    except Exception as err:  # network/IO problems surface as many exception types
        raise DataError(f"downloading Fashion-MNIST to {root} failed: {err}; "
                        "install dataset-fashion-mnist (apt-get) or place the IDX files there") from err


def _check_shapes(shapes: dict[str, tuple[int, ...]], files: dict[str, Path]) -> None:
    """Images [N, 28, 28] with N >= 1 and as many labels, for train and test; DataError naming the file."""
    for part in ("train", "test"):
        images, labels = shapes[f"{part}_images"], shapes[f"{part}_labels"]
        if images[1:] != (FASHION_MNIST_SIDE, FASHION_MNIST_SIDE) or images[0] == 0:
            raise DataError(f"{files[f'{part}_images']} holds images of shape {images}, expected "
                            f"[N>=1, {FASHION_MNIST_SIDE}, {FASHION_MNIST_SIDE}]; replace the file")
        if images[0] != labels[0]:
            raise DataError(f"Fashion-MNIST {part}: {images[0]} images but {labels[0]} labels in "
                            f"{files[f'{part}_images'].parent}; replace the files")


def check_fashion_mnist_headers(files: dict[str, Path]) -> None:
    """The checks of read_fashion_mnist that only need the IDX headers (a few bytes per file)."""
    _check_shapes({key: read_idx_shape(path, 3 if key.endswith("images") else 1)
                   for key, path in files.items()}, files)


def read_fashion_mnist(files: dict[str, Path]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train images, train labels, test images, test labels) as uint8 [N,28,28] / int64 [N]."""
    # Headers first: a wrong shape or count is reported before megabytes are decompressed.
    check_fashion_mnist_headers(files)
    arrays = {key: read_idx(path, 3 if key.endswith("images") else 1) for key, path in files.items()}
    _check_shapes({key: array.shape for key, array in arrays.items()}, files)
    for part in ("train", "test"):
        labels = arrays[f"{part}_labels"]
        if int(labels.max()) >= len(FASHION_MNIST_CLASSES):
            raise DataError(f"{files[f'{part}_labels']} has label {int(labels.max())}, outside the "
                            f"{len(FASHION_MNIST_CLASSES)} classes 0..{len(FASHION_MNIST_CLASSES) - 1}; "
                            "replace the file")
    return (arrays["train_images"], arrays["train_labels"].astype(np.int64),
            arrays["test_images"], arrays["test_labels"].astype(np.int64))


def to_padded_rgb(images: np.ndarray) -> np.ndarray:
    """uint8 [N,H,W] -> uint8 [N,3,H+4,W+4]: zero-pad 2 px each side, replicate to three channels."""
    p = FASHION_MNIST_PAD
    padded = np.pad(images, ((0, 0), (p, p), (p, p)))
    return np.ascontiguousarray(np.broadcast_to(padded[:, None], (len(images), 3, *padded.shape[1:])))


def _locate(cfg: DataConfig) -> tuple[dict[str, Path] | None, Path]:
    """(the four files or None, where they were looked for); an explicit data.root must be readable."""
    root = Path(cfg.root).expanduser() if cfg.root is not None else None
    if root is not None and not (cfg.download and not root.exists()):  # download creates a missing root
        require_directory(root, "data.root", _NOT_FOUND_HINT)
    search_root = root or FASHION_MNIST_DEBIAN_ROOT
    files = locate_fashion_mnist(search_root)
    if files is None and root is None:
        files = locate_fashion_mnist(FASHION_MNIST_DOWNLOAD_ROOT)  # an earlier download
    return files, search_root


def _not_found(search_root: Path) -> DataError:
    return DataError(f"Fashion-MNIST IDX files ({', '.join(_FILES.values())}[.gz]) not found in "
                     f"{search_root}; {_NOT_FOUND_HINT}")


def check_fashion_mnist_available(cfg: DataConfig) -> None:
    """The four files are there, readable, and their headers agree (registered availability check)."""
    files, search_root = _locate(cfg)
    if files is None:
        if cfg.download:
            return
        raise _not_found(search_root)
    for path in files.values():
        require_file(path, "replace the file (re-download or reinstall)")
    check_fashion_mnist_headers(files)


@register_dataset("fashion-mnist", check=check_fashion_mnist_available, classes=10)
def load_fashion_mnist_bundle(cfg: DataConfig) -> DatasetBundle:
    files, search_root = _locate(cfg)
    if files is None and cfg.download:
        root = Path(cfg.root).expanduser() if cfg.root is not None else None
        target = root or FASHION_MNIST_DOWNLOAD_ROOT
        _download(target)
        files = locate_fashion_mnist(target)
    if files is None:
        raise _not_found(search_root)
    train_x, train_y, test_x, test_y = read_fashion_mnist(files)
    return tensor_bundle(
        cfg, name="fashion-mnist", class_names=FASHION_MNIST_CLASSES, mean=FASHION_MNIST_MEAN,
        std=FASHION_MNIST_STD, train_images=to_padded_rgb(train_x), train_labels=train_y,
        test_images=to_padded_rgb(test_x), test_labels=test_y, hflip_default=True,
        provenance={"source": str(files["train_images"].parent), "pad_28_to_32": FASHION_MNIST_PAD},
    )

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
from cidpipe.data.datasets.idx import read_idx
from cidpipe.data.registry import register_dataset
from cidpipe.data.splitting import tensor_bundle
from cidpipe.errors import DataError

FASHION_MNIST_DEBIAN_ROOT = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_DOWNLOAD_ROOT = Path("~/.cache/cidpipe/datasets").expanduser()
FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
FASHION_MNIST_PAD = 2
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


def _find(directory: Path, stem: str) -> Path | None:
    for candidate in (directory / stem, directory / f"{stem}.gz"):
        if candidate.is_file():
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


def read_fashion_mnist(files: dict[str, Path]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train images, train labels, test images, test labels) as uint8 [N,28,28] / int64 [N]."""
    arrays = {key: read_idx(path, 3 if key.endswith("images") else 1) for key, path in files.items()}
    for part in ("train", "test"):
        n_img, n_lab = len(arrays[f"{part}_images"]), len(arrays[f"{part}_labels"])
        if n_img != n_lab:
            raise DataError(f"Fashion-MNIST {part}: {n_img} images but {n_lab} labels in "
                            f"{files[f'{part}_images'].parent}; replace the files")
    return (arrays["train_images"], arrays["train_labels"].astype(np.int64),
            arrays["test_images"], arrays["test_labels"].astype(np.int64))


def to_padded_rgb(images: np.ndarray) -> np.ndarray:
    """uint8 [N,H,W] -> uint8 [N,3,H+4,W+4]: zero-pad 2 px each side, replicate to three channels."""
    p = FASHION_MNIST_PAD
    padded = np.pad(images, ((0, 0), (p, p), (p, p)))
    return np.ascontiguousarray(np.broadcast_to(padded[:, None], (len(images), 3, *padded.shape[1:])))


@register_dataset("fashion-mnist")
def load_fashion_mnist_bundle(cfg: DataConfig) -> DatasetBundle:
    root = Path(cfg.root).expanduser() if cfg.root is not None else None
    search_root = root or FASHION_MNIST_DEBIAN_ROOT
    files = locate_fashion_mnist(search_root)
    if files is None and root is None:
        files = locate_fashion_mnist(FASHION_MNIST_DOWNLOAD_ROOT)  # an earlier download
    if files is None and cfg.download:
        target = root or FASHION_MNIST_DOWNLOAD_ROOT
        _download(target)
        files = locate_fashion_mnist(target)
    if files is None:
        raise DataError(f"Fashion-MNIST IDX files ({', '.join(_FILES.values())}[.gz]) not found in "
                        f"{search_root}; run `apt-get install dataset-fashion-mnist`, set data.root, "
                        "or set data.download: true")
    train_x, train_y, test_x, test_y = read_fashion_mnist(files)
    return tensor_bundle(
        cfg, name="fashion-mnist", class_names=FASHION_MNIST_CLASSES, mean=FASHION_MNIST_MEAN,
        std=FASHION_MNIST_STD, train_images=to_padded_rgb(train_x), train_labels=train_y,
        test_images=to_padded_rgb(test_x), test_labels=test_y, hflip_default=True,
        provenance={"source": str(files["train_images"].parent), "pad_28_to_32": FASHION_MNIST_PAD},
    )

"""Writers of small on-disk datasets in the real file formats (used by tests/data; never downloads)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from cidpipe.data.datasets.idx import write_idx


def glyph_images(labels: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """uint8 [N, size, size]: black background with one bright random rectangle (a stroke-like foreground)."""
    n = len(labels)
    images = np.zeros((n, size, size), dtype=np.uint8)
    top = rng.integers(2, size // 2, n)
    left = rng.integers(2, size // 2, n)
    rows = np.arange(size)[None, :, None]
    cols = np.arange(size)[None, None, :]
    top, left = top[:, None, None], left[:, None, None]
    inside = (rows >= top) & (rows < top + 8) & (cols >= left) & (cols < left + 6)
    brightness = rng.integers(128, 256, (n, size, size), dtype=np.int64).astype(np.uint8)
    images[inside] = brightness[inside]
    return images


def write_fake_fashion(root: Path, n_train: int, n_test: int, seed: int = 0) -> dict[str, np.ndarray]:
    """IDX files in Fashion-MNIST's names: train gzip-compressed, test plain (both forms are read)."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for part, n, compress in (("train", n_train, True), ("t10k", n_test, False)):
        labels = (np.arange(n) % 10).astype(np.uint8)
        rng.shuffle(labels)
        images = glyph_images(labels, 28, rng)
        suffix = ".gz" if compress else ""
        write_idx(root / f"{part}-images-idx3-ubyte{suffix}", images, compress=compress)
        write_idx(root / f"{part}-labels-idx1-ubyte{suffix}", labels, compress=compress)
        arrays[f"{part}_images"], arrays[f"{part}_labels"] = images, labels
    return arrays


def _cifar_record(n: int, num_classes: int, label_key: str, rng: np.random.Generator) -> dict:
    labels = [int(v) for v in rng.permutation(np.arange(n) % num_classes)]
    data = rng.integers(0, 256, (n, 3072), dtype=np.int64).astype(np.uint8)
    names = [f"{i}.png" for i in range(n)]
    return {"batch_label": "fake", label_key: labels, "data": data, "filenames": names}


def write_fake_cifar(root: Path, variant: str, seed: int = 0) -> dict[str, dict]:
    """The torchvision on-disk layout with tiny batches; protocol 2 (as the real files) and 5 mixed."""
    rng = np.random.default_rng(seed)
    records: dict[str, dict] = {}
    if variant == "cifar10":
        folder = root / "cifar-10-batches-py"
        for i in range(1, 6):
            records[f"data_batch_{i}"] = _cifar_record(40, 10, "labels", rng)
        records["test_batch"] = _cifar_record(50, 10, "labels", rng)
        records["batches.meta"] = {"label_names": [f"class{i}" for i in range(10)], "num_vis": 3072}
    else:
        folder = root / "cifar-100-python"
        records["train"] = _cifar_record(300, 100, "fine_labels", rng)
        records["test"] = _cifar_record(100, 100, "fine_labels", rng)
        records["meta"] = {"fine_label_names": [f"fine{i:02d}" for i in range(100)],
                           "coarse_label_names": [f"coarse{i}" for i in range(20)]}
    folder.mkdir(parents=True, exist_ok=True)
    for index, (name, record) in enumerate(records.items()):
        with open(folder / name, "wb") as fh:
            pickle.dump(record, fh, protocol=2 if index % 2 == 0 else 5)
    return records


def write_fake_imagefolder(root: Path, classes: tuple[str, ...] = ("cat", "dog", "owl"), per_class: int = 10,
                           seed: int = 0) -> None:
    """Tiny PNGs (12x10, random colours) in one folder per class, some in a nested subfolder."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for name in classes:
        for i in range(per_class):
            folder = root / name / ("nested" if i % 4 == 3 else "")
            folder.mkdir(parents=True, exist_ok=True)
            pixels = rng.integers(0, 256, (10, 12, 3), dtype=np.int64).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"img{i:03d}.png")

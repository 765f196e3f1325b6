"""Write a full-size synthetic CIFAR-100 (50,000 train + 10,000 test, 32x32) in the real on-disk format.

For timing the real pipeline where CIFAR-100 itself cannot be fetched (the GPU machine has no network):
the files are the `cifar-100-python/` pickles torchvision and cidpipe read, so `cidpipe run
recipes/cifar100_*.yaml --set data.root=ROOT` does exactly the work of a real run per epoch. Each class is
a coarse random colour template plus per-image noise, so training accuracy moves; the numbers say nothing
about CIFAR-100 accuracy, only about speed.

    python benchmarks/make_synthetic_cifar100.py /tmp/cifar100
"""

from __future__ import annotations

import argparse
import pickle
from pathlib import Path

import numpy as np

CLASSES = 100


def synthetic_record(n: int, templates: np.ndarray, rng: np.random.Generator) -> dict:
    labels = rng.permutation(np.arange(n) % CLASSES)
    noise = rng.normal(0.0, 40.0, size=(n, 3, 32, 32)).astype(np.float32)
    images = np.clip(128.0 + 70.0 * templates[labels] + noise, 0, 255).astype(np.uint8)
    return {"batch_label": "synthetic", "fine_labels": labels.tolist(),
            "coarse_labels": (labels // 5).tolist(), "data": images.reshape(n, 3072),
            "filenames": [f"synthetic_{i}.png" for i in range(n)]}


def write(root: Path, n_train: int, n_test: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(-1.0, 1.0, size=(CLASSES, 3, 4, 4)).astype(np.float32)
    templates = coarse.repeat(8, axis=2).repeat(8, axis=3)  # 4x4 blocks of 8x8 pixels
    return write_records(root, {
        "train": synthetic_record(n_train, templates, rng),
        "test": synthetic_record(n_test, templates, rng),
        "meta": {"fine_label_names": [f"class{i:02d}" for i in range(CLASSES)],
                 "coarse_label_names": [f"super{i:02d}" for i in range(CLASSES // 5)]},
    })


def write_records(root: Path, records: dict[str, dict]) -> Path:
    """``records`` (train, test, meta) as ``root/cifar-100-python/<name>`` pickles; the folder."""
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    for name, record in records.items():
        with open(folder / name, "wb") as fh:
            pickle.dump(record, fh, protocol=2)  # the protocol of the published files
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--train", type=int, default=50_000)
    parser.add_argument("--test", type=int, default=10_000)
    args = parser.parse_args()
    print(f"wrote {write(args.root, args.train, args.test)}")


if __name__ == "__main__":
    main()

"""Write "Fashion-MNIST pairs", a 100-class task made of real images, in the CIFAR-100 on-disk format.

Why: issue 16 needs a student whose INT8 arithmetic itself (not this CPU's saturating kernels) loses more
than half a point. Ten well-separated Fashion-MNIST classes leave logit margins so wide that rounding never
flips a prediction; a hundred classes with small margins between neighbours (a shirt next to a T-shirt) are
where ImageNet-style PTQ losses come from. Each image holds two garments: the first in the red channel, the
second in the green one, blue empty, both padded 28 -> 32 as cidpipe pads Fashion-MNIST; the label is
``10 * first + second``. Stacking in channels keeps the full resolution and keeps horizontal flips
label-preserving (both garments flip together), so the default augmentation applies unchanged.

Training pairs are drawn from the 60 000 training images, test pairs from the 10 000 test images only, each
garment used once per pairing; the result is ``ROOT/cifar-100-python/{train,test,meta}`` and
``cidpipe ... --set data.name=cifar100 --set data.root=ROOT`` reads it like the real thing.

    python benchmarks/make_fashion_pairs.py /tmp/fashion-pairs
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from cidpipe.data.datasets.fashion_mnist import (
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_DEBIAN_ROOT,
    FASHION_MNIST_PAD,
    locate_fashion_mnist,
)
from cidpipe.data.datasets.idx import read_idx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_synthetic_cifar100 import write_records  # noqa: E402

SIDE = 32


def _padded(images: np.ndarray) -> np.ndarray:
    pad = FASHION_MNIST_PAD
    return np.pad(images, ((0, 0), (pad, pad), (pad, pad)))


def pair_record(images: np.ndarray, labels: np.ndarray, n: int, rng: np.random.Generator, name: str) -> dict:
    """``n`` pairs; the images are reshuffled after each pass so every garment appears as often."""
    passes = -(-n // len(images))
    first = np.concatenate([rng.permutation(len(images)) for _ in range(passes)])[:n]
    second = np.concatenate([rng.permutation(len(images)) for _ in range(passes)])[:n]
    padded = _padded(images)
    data = np.zeros((n, 3, SIDE, SIDE), dtype=np.uint8)
    data[:, 0], data[:, 1] = padded[first], padded[second]
    fine = (10 * labels[first].astype(np.int64) + labels[second]).tolist()
    return {"batch_label": f"fashion-mnist pairs, {name}", "fine_labels": fine,
            "coarse_labels": labels[first].astype(np.int64).tolist(),
            "data": data.reshape(n, 3 * SIDE * SIDE),
            "filenames": [f"pair_{i}_{a}_{b}.png"
                          for i, (a, b) in enumerate(zip(first, second, strict=True))]}


def write(root: Path, source: Path, n_train: int, n_test: int, seed: int = 0) -> Path:
    files = locate_fashion_mnist(source)
    if files is None:
        raise SystemExit(f"no Fashion-MNIST IDX files under {source}: apt-get install dataset-fashion-mnist")
    rng = np.random.default_rng(seed)
    records = {
        "train": pair_record(read_idx(files["train_images"], 3), read_idx(files["train_labels"], 1),
                             n_train, rng, "train"),
        "test": pair_record(read_idx(files["test_images"], 3), read_idx(files["test_labels"], 1),
                            n_test, rng, "test"),
        "meta": {"fine_label_names": [f"{a} + {b}" for a in FASHION_MNIST_CLASSES
                                      for b in FASHION_MNIST_CLASSES],
                 "coarse_label_names": list(FASHION_MNIST_CLASSES)},
    }
    return write_records(root, records)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--source", type=Path, default=FASHION_MNIST_DEBIAN_ROOT)
    parser.add_argument("--train", type=int, default=60_000)
    parser.add_argument("--test", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(f"wrote {write(args.root, args.source, args.train, args.test, args.seed)}")


if __name__ == "__main__":
    main()

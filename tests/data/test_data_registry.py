"""Every registered dataset, loaded from real files written by the tests (digits: the real sklearn data)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from cidpipe.data import DataConfig, DatasetBundle, list_datasets, load_dataset
from cidpipe.data.splitting import stratified_split
from cidpipe.errors import ConfigError

EXPECTED = {
    # name: (num_classes, first class name, train+val size, test size)
    "digits": (10, "0", 1438, 359),
    "fashion-mnist": (10, "T-shirt/top", 600, 200),
    "cifar10": (10, "class0", 200, 50),
    "cifar100": (100, "fine00", 300, 100),
    "imagefolder": (3, "cat", 24, 6),
}


def config(name: str, roots: dict[str, Path], **overrides: object) -> DataConfig:
    root = None if name == "digits" else roots[name]
    return DataConfig(name=name, root=root, **overrides)


def sample_hashes(split) -> set[bytes]:
    x, _ = split.to_numpy()
    return {hashlib.sha256(row.tobytes()).digest() for row in x}


def test_every_builtin_is_registered() -> None:
    assert set(EXPECTED) <= set(list_datasets())


def test_unknown_dataset_suggests_near_miss() -> None:
    with pytest.raises(ConfigError, match="did you mean 'cifar10'"):
        load_dataset(DataConfig(name="cifar1O"))


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_bundle_shapes_classes_and_splits(name: str, fake_roots: dict[str, Path]) -> None:
    bundle = load_dataset(config(name, fake_roots))
    num_classes, first_class, pool_size, test_size = EXPECTED[name]
    assert isinstance(bundle, DatasetBundle)
    assert bundle.num_classes == num_classes == len(bundle.class_names)
    assert bundle.class_names[0] == first_class
    assert bundle.input_shape == (3, 32, 32)
    assert len(bundle.train) + len(bundle.val) == pool_size
    assert len(bundle.test) == test_size
    assert bundle.extra_test == {}
    # Validation is ~val_fraction of the pool and contains every class that has >= 2 samples.
    assert abs(len(bundle.val) - 0.1 * pool_size) <= num_classes
    for split in (bundle.train, bundle.val, bundle.test):
        assert split.labels.dtype == torch.int64
        assert int(split.labels.min()) >= 0 and int(split.labels.max()) < num_classes
        x, y = split.to_numpy(max_samples=5)
        assert x.dtype == np.float32 and y.dtype == np.int64 and x.shape == (min(5, len(split)), 3, 32, 32)
    # The synthetic images are all distinct, so the three splits must not share a single sample.
    if name != "digits":
        train, val, test = (sample_hashes(s) for s in (bundle.train, bundle.val, bundle.test))
        assert not (train & val) and not (train & test) and not (val & test)
    json.dumps(bundle.describe())  # manifests must be able to store it


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_batches_cover_each_sample_once(name: str, fake_roots: dict[str, Path]) -> None:
    split = load_dataset(config(name, fake_roots)).val
    gen = torch.Generator().manual_seed(3)
    batches = list(split.batches(7, shuffle=True, augment=True, device="cpu", generator=gen))
    assert all(x.dtype == torch.float32 and y.dtype == torch.int64 for x, y in batches)
    assert all(x.shape[1:] == (3, 32, 32) and x.shape[0] == y.shape[0] <= 7 for x, y in batches)
    labels = torch.cat([y for _, y in batches])
    assert sorted(labels.tolist()) == sorted(split.labels.tolist())
    dropped = list(split.batches(7, shuffle=True, augment=False, generator=gen, drop_last=True))
    assert len(dropped) == len(split) // 7 and all(x.shape[0] == 7 for x, _ in dropped)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_loading_is_deterministic_and_seeded(name: str, fake_roots: dict[str, Path]) -> None:
    first = load_dataset(config(name, fake_roots))
    again = load_dataset(config(name, fake_roots))
    reseeded = load_dataset(config(name, fake_roots, split_seed=1))
    for part in ("train", "val", "test"):
        assert getattr(first, part).fingerprint() == getattr(again, part).fingerprint()
    assert first.val.fingerprint() != reseeded.val.fingerprint()
    assert first.test.fingerprint() == reseeded.test.fingerprint()  # the test set never moves


def test_limit_train_takes_a_seeded_head(fake_roots: dict[str, Path]) -> None:
    full = load_dataset(config("fashion-mnist", fake_roots))
    limited = load_dataset(config("fashion-mnist", fake_roots, limit_train=50))
    assert len(limited.train) == 50 and len(limited.val) == len(full.val)
    np.testing.assert_array_equal(limited.train.to_numpy()[0], full.train.to_numpy(50)[0])
    # A random subset, not the first 50 files: the labels are mixed.
    assert len(set(limited.train.labels.tolist())) >= 8


def test_input_size_and_hflip_come_from_the_config(fake_roots: dict[str, Path]) -> None:
    bundle = load_dataset(DataConfig(name="digits", input_size=16, hflip=True))
    assert bundle.input_shape == (3, 16, 16) and bundle.train.to_numpy(2)[0].shape == (2, 3, 16, 16)
    assert bundle.train.hflip is True
    assert load_dataset(DataConfig(name="digits")).train.hflip is False  # a mirrored digit is not a digit
    assert load_dataset(config("cifar10", fake_roots)).train.hflip is True
    assert load_dataset(config("cifar10", fake_roots, hflip=False)).train.hflip is False
    folder = load_dataset(config("imagefolder", fake_roots, input_size=24))
    assert folder.train.to_numpy(1)[0].shape == (1, 3, 24, 24)


def test_stratified_split_is_disjoint_stratified_and_seeded() -> None:
    labels = np.repeat(np.arange(5), [10, 20, 30, 3, 1])
    keep, held = stratified_split(labels, 0.2, seed=7)
    assert sorted(np.concatenate([keep, held]).tolist()) == list(range(len(labels)))
    assert np.bincount(labels[held], minlength=5).tolist() == [2, 4, 6, 1, 0]
    again_keep, again_held = stratified_split(labels, 0.2, seed=7)
    np.testing.assert_array_equal(keep, again_keep)
    np.testing.assert_array_equal(held, again_held)
    assert not np.array_equal(held, stratified_split(labels, 0.2, seed=8)[1])

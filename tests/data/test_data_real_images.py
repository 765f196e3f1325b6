"""Real image data: rectangular inputs, data.mean/std (explicit and auto), an imagefolder val/ folder,
per-sample torchvision transforms (seeded per sample: same batches for any worker count and on resume)
and the eval resize + centre crop. Images are PNGs written here with PIL; digits is sklearn's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cidpipe.config import validate_recipe
from cidpipe.data.config import DataConfig
from cidpipe.data.registry import load_dataset
from cidpipe.data.transforms import sample_seed
from cidpipe.errors import ConfigError
from tests.conftest import tiny_recipe_dict

CLASSES = ("cat", "dog")


def _write_split(folder: Path, per_class: int, seed: int) -> None:
    """Photos of different sizes and aspect ratios: a class colour in the centre, noise around it."""
    rng = np.random.default_rng(seed)
    for label, name in enumerate(CLASSES):
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            height, width = rng.integers(20, 48, 2)
            pixels = rng.integers(0, 256, (height, width, 3), dtype=np.int64).astype(np.uint8)
            pixels[height // 4 : 3 * height // 4, width // 4 : 3 * width // 4] = (200, 40, 40) if label else (
                40, 40, 200)
            Image.fromarray(pixels).save(folder / name / f"{i:03d}.png")


@pytest.fixture(scope="module")
def photo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("photos")
    _write_split(root / "train", 12, 0)
    _write_split(root / "val", 3, 1)
    _write_split(root / "test", 4, 2)
    return root


def _cfg(root: Path, **changes) -> DataConfig:
    return DataConfig(name="imagefolder", root=root, input_size=[16, 24], **changes)


def test_rectangular_input_size_for_tensor_and_file_datasets(photo_root: Path) -> None:
    digits = load_dataset(DataConfig(name="digits", input_size=[16, 24], limit_train=64))
    assert digits.input_shape == (3, 16, 24)
    x, _ = next(iter(digits.train.batches(8, shuffle=True, augment=True, generator=torch.Generator())))
    assert x.shape == (8, 3, 16, 24)
    folder = load_dataset(_cfg(photo_root))
    x, _ = next(iter(folder.train.batches(4, shuffle=False, augment=True, generator=torch.Generator())))
    assert folder.input_shape == (3, 16, 24) and x.shape == (4, 3, 16, 24)
    # An int still means a square, recorded as before.
    square = load_dataset(DataConfig(name="digits", input_size=16, limit_train=8))
    assert square.provenance["input_size"] == 16 and square.input_shape == (3, 16, 16)


def test_val_folder_is_the_validation_split(photo_root: Path) -> None:
    bundle = load_dataset(_cfg(photo_root))
    assert (len(bundle.train), len(bundle.val), len(bundle.test)) == (24, 6, 8)
    assert all("/val/" in p.as_posix() for p in bundle.val.paths)
    assert bundle.provenance["val_folder"] == "val"


def test_train_and_val_without_test_evaluates_on_val_and_selects_on_a_carved_split(tmp_path: Path) -> None:
    _write_split(tmp_path / "train", 10, 0)
    _write_split(tmp_path / "val", 3, 1)
    bundle = load_dataset(_cfg(tmp_path, val_fraction=0.2))
    assert len(bundle.test) == 6 and all("/val/" in p.as_posix() for p in bundle.test.paths)
    assert len(bundle.val) == 4 and all("/train/" in p.as_posix() for p in bundle.val.paths)


def test_explicit_mean_std_end_in_the_bundle_and_a_wrong_count_is_a_config_error() -> None:
    bundle = load_dataset(DataConfig(name="digits", input_size=16, limit_train=64,
                                     mean=[0.5, 0.5, 0.5], std=[0.25, 0.25, 0.25]))
    assert bundle.mean == (0.5, 0.5, 0.5) and bundle.train.mean == bundle.test.mean == (0.5, 0.5, 0.5)
    assert bundle.describe()["std"] == [0.25, 0.25, 0.25]
    assert bundle.provenance["normalisation"] == {"mean": "recipe", "std": "recipe"}
    with pytest.raises(ConfigError, match="data.mean has 1 values but digits images have 3"):
        load_dataset(DataConfig(name="digits", input_size=16, limit_train=8, mean=[0.5]))


def test_auto_mean_std_are_the_training_split_statistics(photo_root: Path) -> None:
    bundle = load_dataset(DataConfig(name="digits", input_size=16, mean="auto", std="auto"))
    pixels = bundle.train.images.double() / 255.0
    expected_mean = pixels.mean(dim=(0, 2, 3))
    expected_std = pixels.permute(1, 0, 2, 3).reshape(3, -1).std(dim=1, unbiased=False)
    assert np.allclose(bundle.mean, expected_mean.numpy(), atol=1e-12)
    assert np.allclose(bundle.std, expected_std.numpy(), atol=1e-12)
    x, _ = bundle.train.to_numpy()
    assert abs(float(x.mean())) < 1e-4 and abs(float(x.std()) - 1.0) < 1e-3  # it really normalises
    folder = load_dataset(_cfg(photo_root, mean="auto"))
    assert folder.provenance["normalisation"] == {"auto_images": 24, "mean": "auto", "std": "dataset"}
    assert folder.mean != folder.std and folder.test.mean == folder.mean


def test_new_data_keys_stay_out_of_the_dump_at_their_defaults() -> None:
    dumped = DataConfig().model_dump(mode="json")
    assert not {"mean", "std", "transforms"} & set(dumped)
    assert dumped["num_workers"] == 0


def test_transforms_are_refused_where_they_cannot_run(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file-backed"):
        load_dataset(DataConfig(name="digits", input_size=16, transforms={"train": "imagenet"}))
    raw = tiny_recipe_dict(tmp_path, data={"transforms": {"train": ["hflip"]}, "device_resident": "on"})
    with pytest.raises(ConfigError, match="device_resident: on"):
        validate_recipe(raw)
    with pytest.raises(ConfigError, match="transforms"):
        validate_recipe(tiny_recipe_dict(tmp_path, data={"transforms": {"train": ["mixup"]}}))


TRAIN_OPS = ["random_resized_crop", "hflip", {"color_jitter": {"brightness": 0.3, "hue": 0.05}},
             {"randaugment": {"num_ops": 2, "magnitude": 7}}, "random_erasing"]


def _epoch(split, epoch: int, workers_split=None) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(1000 + epoch)
    source = workers_split or split
    return [x for x, _ in source.batches(8, shuffle=True, augment=True, generator=generator)]


def test_per_sample_transforms_depend_only_on_the_epoch_generator(photo_root: Path) -> None:
    bundle = load_dataset(_cfg(photo_root, transforms={"train": TRAIN_OPS}))
    train = bundle.train
    rng_before = torch.get_rng_state()
    first = _epoch(train, 0)
    assert torch.equal(torch.get_rng_state(), rng_before)  # the loop's RNG (saved for resume) untouched
    assert all(torch.equal(a, b) for a, b in zip(first, _epoch(train, 0), strict=True))
    assert not torch.equal(first[0], _epoch(train, 1)[0])
    # One loader worker decodes and augments: the very same batches (it persists across two epochs).
    threaded = train.replace(num_workers=1)
    for epoch in (0, 1):
        batches = _epoch(train, epoch, threaded)
        assert all(torch.equal(a, b) for a, b in zip(_epoch(train, epoch), batches, strict=True))
    # Augmented views differ from the deterministic (eval) view the validation split uses.
    plain, _ = next(iter(train.batches(8, shuffle=False, augment=False)))
    assert torch.equal(plain, next(iter(train.batches(8, shuffle=False, augment=False)))[0])
    assert train.describe()["transforms"]["train"][1] == {"hflip": {"p": 0.5}}


def test_eval_transform_resizes_then_centre_crops(tmp_path: Path) -> None:
    # A 60x20 image in three vertical bands: resized to 48x16 (shorter side 16 at crop_pct 1.0), then
    # cropped to 16x16 in the centre, only the middle band is left.
    bands = np.zeros((20, 60, 3), np.uint8)
    bands[:, :20], bands[:, 20:40], bands[:, 40:] = (255, 0, 0), (0, 255, 0), (0, 0, 255)
    for part in ("train", "test"):
        for name in CLASSES:
            (tmp_path / part / name).mkdir(parents=True)
            Image.fromarray(bands).save(tmp_path / part / name / "a.png")
    cfg = DataConfig(name="imagefolder", root=tmp_path, input_size=16, val_fraction=0.0,
                     transforms={"train": "none", "eval": {"crop_pct": 1.0}})
    images, _ = load_dataset(cfg).test.load_uint8()
    assert images.shape == (2, 3, 16, 16)
    inner = images[:, :, :, 1:-1]  # the outermost columns blend with the next band (antialiasing)
    assert inner[:, 1].min() >= 250 and inner[:, 0].max() <= 5 and inner[:, 2].max() <= 5
    # The training view of "none" squashes the whole image: red on the left, blue on the right.
    train = load_dataset(cfg).train
    x, _ = next(iter(train.batches(2, shuffle=False, augment=True, generator=torch.Generator())))
    assert bool((x[:, 0, :, 0] > x[:, 1, :, 0]).all() and (x[:, 2, :, -1] > x[:, 1, :, -1]).all())


def test_sample_seeds_differ_per_sample_and_pass() -> None:
    seeds = {sample_seed(p, i) for p in (0, 1, 2**61) for i in range(1000)}
    assert len(seeds) == 3000 and all(0 <= s < 2**63 for s in seeds)
    # torch seeds its CPU generator from the low 32 bits: those must differ too.
    assert len({s & 0xFFFFFFFF for s in seeds}) == 3000


def test_two_passes_at_once_over_one_split_stay_independent(photo_root: Path) -> None:
    split = load_dataset(_cfg(photo_root, num_workers=1)).test
    reference = [x for x, _ in split.batches(2, shuffle=False, augment=False)]
    outer = split.batches(2, shuffle=False, augment=False)
    first = next(outer)[0]
    inner = [x for x, _ in split.batches(2, shuffle=False, augment=False)]  # the same loader key, meanwhile
    rest = [x for x, _ in outer]
    assert all(torch.equal(a, b) for a, b in zip([first, *rest], reference, strict=True))
    assert all(torch.equal(a, b) for a, b in zip(inner, reference, strict=True))

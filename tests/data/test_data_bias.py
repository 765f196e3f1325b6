"""Colour bias (Biased-MNIST protocol): rates, independence, pixel painting and determinism."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from data_fakes import write_fake_fashion
from scipy import stats

from cidpipe.data import BiasConfig, DataConfig, DatasetBundle, TensorSplit, load_dataset
from cidpipe.data.bias import BASE_PALETTE, palette
from cidpipe.data.paint import BACKGROUND_THRESHOLD

RHO = 0.9


@pytest.fixture(scope="module")
def fashion_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("biased-fashion")
    write_fake_fashion(root, n_train=5000, n_test=1500, seed=2)
    return root


def biased(root: Path, seed: int = 0, rho: float = RHO) -> DatasetBundle:
    return load_dataset(DataConfig(name="fashion-mnist", root=root, bias=BiasConfig(rho=rho, seed=seed)))


def test_training_alignment_rate_matches_rho(fashion_root: Path) -> None:
    bundle = biased(fashion_root)
    for split in (bundle.train, bundle.val):
        colours, labels = split.bias_colours.numpy(), split.labels.numpy()
        n, aligned = len(labels), int((colours == labels).sum())
        assert abs(aligned - RHO * n) < 4 * np.sqrt(n * RHO * (1 - RHO))
    # The misaligned samples take every other colour equally often.
    colours, labels = bundle.train.bias_colours.numpy(), bundle.train.labels.numpy()
    shift = (colours - labels)[colours != labels] % 10
    assert shift.min() >= 1 and stats.chisquare(np.bincount(shift, minlength=10)[1:]).pvalue > 1e-3


def test_test_flavours(fashion_root: Path) -> None:
    bundle = biased(fashion_root)
    assert set(bundle.extra_test) == {"aligned", "unbiased", "conflicting"}
    assert bundle.test is bundle.extra_test["unbiased"]
    labels = bundle.test.labels.numpy()
    np.testing.assert_array_equal(bundle.extra_test["aligned"].bias_colours.numpy(), labels)
    assert not (bundle.extra_test["conflicting"].bias_colours.numpy() == labels).any()
    unbiased = bundle.extra_test["unbiased"].bias_colours.numpy()
    table = np.zeros((10, 10), dtype=np.int64)
    np.add.at(table, (labels, unbiased), 1)
    assert stats.chi2_contingency(table).pvalue > 1e-3  # colour independent of the class
    assert stats.chisquare(np.bincount(unbiased, minlength=10)).pvalue > 1e-3  # and uniform


def test_pixels_carry_the_recorded_colour_on_the_background_only(fashion_root: Path) -> None:
    plain = load_dataset(DataConfig(name="fashion-mnist", root=fashion_root))
    bundle = biased(fashion_root)
    pal = torch.from_numpy(palette(10))
    for name, split in [("train", bundle.train), *bundle.extra_test.items()]:
        original = (plain.train if name == "train" else plain.test).images
        painted = split.images
        background = (original.amax(dim=1, keepdim=True) < BACKGROUND_THRESHOLD).expand_as(original)
        expected_fill = pal[split.bias_colours][:, :, None, None].expand_as(original)
        # Background pixels take the recorded colour; the strokes stay as they were.
        assert torch.equal(painted, torch.where(background, expected_fill, original))
        assert background.any() and (~background).any()


def test_colour_images_get_a_border(fake_roots: dict[str, Path]) -> None:
    cfg = DataConfig(name="cifar10", root=fake_roots["cifar10"], bias=BiasConfig(rho=1.0, border_width=3))
    plain = load_dataset(DataConfig(name="cifar10", root=fake_roots["cifar10"])).train
    split = load_dataset(cfg).train
    assert isinstance(split, TensorSplit) and torch.equal(split.bias_colours, split.labels)
    colours = torch.from_numpy(palette(10))[split.labels]
    for edge in (split.images[:, :, :3, :], split.images[:, :, -3:, :],
                 split.images[:, :, :, :3], split.images[:, :, :, -3:]):
        assert torch.equal(edge, colours[:, :, None, None].expand_as(edge))
    assert torch.equal(split.images[:, :, 3:-3, 3:-3], plain.images[:, :, 3:-3, 3:-3])


def test_imagefolder_bias_paints_the_frame_when_decoding(fake_roots: dict[str, Path]) -> None:
    bias = BiasConfig(rho=0.5, seed=1)
    bundle = load_dataset(DataConfig(name="imagefolder", root=fake_roots["imagefolder"], bias=bias))
    again = load_dataset(DataConfig(name="imagefolder", root=fake_roots["imagefolder"], bias=bias))
    split = bundle.extra_test["conflicting"]
    images, _ = split.load_uint8()
    colours = torch.from_numpy(palette(3))[split.bias_colours]
    assert torch.equal(images[:, :, :4, 0], colours[:, :, None].expand(-1, -1, 4))
    assert (split.bias_colours != split.labels).all()
    assert split.fingerprint() == again.extra_test["conflicting"].fingerprint()


def test_same_seed_same_data_other_seed_other_data(fashion_root: Path) -> None:
    first, again, other = (biased(fashion_root, seed=s) for s in (5, 5, 6))
    for name in ("train", "val", "test"):
        assert getattr(first, name).fingerprint() == getattr(again, name).fingerprint()
        assert getattr(first, name).fingerprint() != getattr(other, name).fingerprint()
    unbiased = load_dataset(DataConfig(name="fashion-mnist", root=fashion_root))
    assert first.train.fingerprint() != unbiased.train.fingerprint()
    assert first.describe()["provenance"]["bias"]["style"] == "background"


def test_palette_is_fixed_and_distinct_for_many_classes() -> None:
    assert palette(10).tolist() == [list(c) for c in BASE_PALETTE]
    many = palette(100)
    assert many.shape == (100, 3) and len(np.unique(many, axis=0)) == 100
    np.testing.assert_array_equal(many, palette(100))

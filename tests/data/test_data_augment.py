"""Batched device-side augmentation: statistics of crops and flips, exactness, determinism.

No GPU here: device independence rests on the random numbers being drawn on the CPU generator (checked
indirectly: the same generator seed gives the same batches whatever the images' storage device is).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import stats

from cidpipe.data import DataConfig, ImageFolderSplit, TensorSplit, load_dataset
from cidpipe.data.augment import crop_flip, draw_crop_flip, normalise

SIZE, PAD = 16, 4


def coordinate_split(n: int, hflip: bool) -> TensorSplit:
    """Channel 0 holds row+1, channel 1 column+1 (so 0 only in the padding), channel 2 the sample index."""
    rows = torch.arange(1, SIZE + 1, dtype=torch.uint8)
    images = torch.zeros(n, 3, SIZE, SIZE, dtype=torch.uint8)
    images[:, 0] = rows[:, None]
    images[:, 1] = rows[None, :]
    images[:, 2] = torch.arange(n, dtype=torch.uint8)[:, None, None]
    labels = torch.zeros(n, dtype=torch.long)
    return TensorSplit(images, labels, (0.0,) * 3, (1 / 255,) * 3, pad=PAD, hflip=hflip)


def recovered_offsets(x: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row offset, column offset, flipped) per sample, read back from the centre pixels' coordinates."""
    pixels = x.round().long()  # normalisation with mean 0, std 1/255 gives back the uint8 values
    centre = SIZE // 2
    rows = pixels[:, 0, centre, centre] - 1 - centre + PAD
    flipped = pixels[:, 1, centre, centre + 1] < pixels[:, 1, centre, centre]
    col_at_centre = pixels[:, 1, centre, centre] - 1
    # Unflipped: column c + offset - pad at c; flipped: (W-1-c) + offset - pad.
    cols = torch.where(flipped, col_at_centre - (SIZE - 1 - centre), col_at_centre - centre) + PAD
    return rows.numpy(), cols.numpy(), flipped.numpy()


def test_crop_offsets_are_uniform_and_flip_rate_is_one_half() -> None:
    split = coordinate_split(250, hflip=True)
    gen = torch.Generator().manual_seed(0)
    batches = [x for _ in range(16) for x, _ in split.batches(100, shuffle=True, augment=True, generator=gen)]
    rows, cols, flipped = recovered_offsets(torch.cat(batches))
    n = len(rows)  # 4000 crops
    for offsets in (rows, cols):
        counts = np.bincount(offsets, minlength=2 * PAD + 1)
        assert len(counts) == 2 * PAD + 1  # never outside 0..2*pad
        assert stats.chisquare(counts).pvalue > 1e-3
    assert stats.chisquare(np.bincount(rows * (2 * PAD + 1) + cols)).pvalue > 1e-3  # jointly uniform too
    assert abs(flipped.sum() - n / 2) < 4 * np.sqrt(n / 4)


def test_no_flips_when_hflip_is_off() -> None:
    gen = torch.Generator().manual_seed(1)
    x = torch.cat([x for x, _ in coordinate_split(300, hflip=False).batches(64, shuffle=False, augment=True,
                                                                             generator=gen)])
    _, cols, flipped = recovered_offsets(x)
    assert not flipped.any() and len(set(cols.tolist())) == 2 * PAD + 1


def test_crop_flip_equals_pad_slice_mirror_reference() -> None:
    images = torch.randint(0, 256, (12, 3, 10, 8), dtype=torch.uint8)
    rows, cols, flips = draw_crop_flip(12, 3, True, torch.Generator().manual_seed(5))
    out = crop_flip(images, 3, rows, cols, flips)
    padded = F.pad(images, (3, 3, 3, 3))
    for i in range(12):  # a plain per-sample reference, written independently of the gather
        ref = padded[i, :, rows[i] : rows[i] + 10, cols[i] : cols[i] + 8]
        torch.testing.assert_close(out[i], ref.flip(-1) if flips[i] else ref, rtol=0, atol=0)


def test_without_augmentation_batches_are_the_normalised_images_in_order() -> None:
    split = load_dataset(DataConfig(name="digits")).val
    x = torch.cat([x for x, _ in split.batches(50, shuffle=False, augment=False)])
    mean = torch.tensor(split.mean).view(1, 3, 1, 1)
    std = torch.tensor(split.std).view(1, 3, 1, 1)
    torch.testing.assert_close(x, (split.images.float() / 255 - mean) / std)
    np.testing.assert_allclose(split.to_numpy()[0], x.numpy(), rtol=0, atol=1e-6)


def test_same_generator_seed_gives_identical_augmented_batches() -> None:
    split = load_dataset(DataConfig(name="digits", hflip=True)).val

    def run(seed: int) -> list[torch.Tensor]:
        gen = torch.Generator().manual_seed(seed)
        return [x for x, _ in split.batches(32, shuffle=True, augment=True, generator=gen)]

    first, again, other = run(11), run(11), run(12)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not torch.equal(first[0], other[0])
    # The device-resident copy (here: the same CPU, a separate tensor) follows the same random stream.
    resident = split.to_device("cpu")
    gen = torch.Generator().manual_seed(11)
    moved = [x for x, _ in resident.batches(32, shuffle=True, augment=True, generator=gen)]
    assert all(torch.equal(a, b) for a, b in zip(first, moved, strict=True))
    assert resident.fingerprint() == split.fingerprint()


def test_normalise_matches_the_formula() -> None:
    images = torch.randint(0, 256, (4, 3, 5, 5), dtype=torch.uint8)
    mean, std = (0.1, 0.2, 0.3), (0.5, 0.25, 2.0)
    mean_t, std_t = torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1)
    expected = (images.float() / 255 - mean_t) / std_t
    torch.testing.assert_close(normalise(images, mean, std), expected)


def test_imagefolder_split_augments_like_its_materialised_copy(fake_roots: dict[str, Path]) -> None:
    split = load_dataset(DataConfig(name="imagefolder", root=fake_roots["imagefolder"])).train
    assert isinstance(split, ImageFolderSplit)
    resident = split.to_device("cpu")
    assert isinstance(resident, TensorSplit)
    np.testing.assert_array_equal(split.to_numpy()[0], resident.to_numpy()[0])
    for augment in (False, True):
        from_files = list(split.batches(8, shuffle=True, augment=augment,
                                        generator=torch.Generator().manual_seed(4)))
        from_tensor = list(resident.batches(8, shuffle=True, augment=augment,
                                            generator=torch.Generator().manual_seed(4)))
        for (xa, ya), (xb, yb) in zip(from_files, from_tensor, strict=True):
            torch.testing.assert_close(xa, xb, rtol=0, atol=0)
            assert torch.equal(ya, yb)


@pytest.mark.parametrize("bad", ["dtype", "labels"])
def test_tensor_split_rejects_malformed_input(bad: str) -> None:
    images = torch.zeros(4, 3, 8, 8, dtype=torch.float32 if bad == "dtype" else torch.uint8)
    labels = torch.zeros(3 if bad == "labels" else 4, dtype=torch.long)
    with pytest.raises(ValueError):
        TensorSplit(images, labels, (0.0,) * 3, (1.0,) * 3)


def test_place_split_follows_device_resident_mode(fake_roots: dict[str, Path]) -> None:
    from cidpipe.data.resident import place_split

    tensor_split = load_dataset(DataConfig(name="digits")).val
    folder_split = load_dataset(DataConfig(name="imagefolder", root=fake_roots["imagefolder"])).val
    assert place_split(tensor_split, "cpu", "auto") is tensor_split  # already there
    assert place_split(folder_split, "cpu", "auto") is folder_split  # file-backed stays on disk
    assert place_split(folder_split, "cpu", "off") is folder_split
    resident = place_split(folder_split, "cpu", "on")
    assert isinstance(resident, TensorSplit) and resident.fingerprint() != folder_split.fingerprint()
    np.testing.assert_array_equal(resident.to_numpy()[0], folder_split.to_numpy()[0])


def test_loader_workers_give_the_same_batches(fake_roots: dict[str, Path]) -> None:
    split = load_dataset(DataConfig(name="imagefolder", root=fake_roots["imagefolder"])).train
    threaded = split.replace(num_workers=2)

    def run(s: ImageFolderSplit) -> list[torch.Tensor]:
        gen = torch.Generator().manual_seed(9)
        return [x for x, _ in s.batches(5, shuffle=True, augment=True, generator=gen)]

    assert all(torch.equal(a, b) for a, b in zip(run(split), run(threaded), strict=True))

"""Device-side batched augmentation vs torchvision's per-sample PIL transforms: the same distribution.

Both paths crop and flip images carrying two marker pixels (bright at MARK, dim two columns to its
right); the position of the bright one gives the crop offset and the side of the dim one the flip.
Offsets must be uniform over the 9 x 9 positions a 4-pixel padding allows (chi-square), flips happen
half the time, and the two paths' offset histograms must not differ (chi-square on the 2 x 81 table).
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from scipy import stats
from torchvision import transforms

from cidpipe.data.augment import random_crop_flip

PAD, SIZE, SAMPLES = 4, 32, 2400
MARK = (12, 12)  # inside the crop for every offset: 4 <= row, col <= 27 - 2
BRIGHT, DIM = 200, 100
P_MIN = 1e-3  # seeded, so deterministic; a real bias drives p far below this


def marker_image() -> torch.Tensor:
    image = torch.zeros(3, SIZE, SIZE, dtype=torch.uint8)
    image[:, MARK[0], MARK[1]] = BRIGHT
    image[:, MARK[0], MARK[1] + 2] = DIM
    return image


def recover(crops: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row offset, column offset, flipped) of each uint8 [N, C, H, W] crop of marker_image()."""
    channel = crops[:, 0]
    flat = (channel == BRIGHT).flatten(1)
    assert bool((flat.sum(1) == 1).all()), "the bright marker must survive every crop exactly once"
    where = flat.float().argmax(1)
    out_row, out_col = (where // SIZE).numpy(), (where % SIZE).numpy()
    right = channel[torch.arange(len(channel)), out_row, np.clip(out_col + 2, 0, SIZE - 1)] == DIM
    flipped = ~right.numpy()
    # A flipped crop is mirrored: map the column back before reading the offset.
    unmirrored_col = np.where(flipped, SIZE - 1 - out_col, out_col)
    return MARK[0] + PAD - out_row, MARK[1] + PAD - unmirrored_col, flipped


def histogram(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    assert rows.min() >= 0 and rows.max() <= 2 * PAD and cols.min() >= 0 and cols.max() <= 2 * PAD
    return np.bincount(rows * (2 * PAD + 1) + cols, minlength=(2 * PAD + 1) ** 2)


def device_side_samples() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    images = marker_image().expand(SAMPLES, -1, -1, -1).contiguous()
    generator = torch.Generator().manual_seed(1)
    crops = torch.cat([random_crop_flip(chunk, PAD, True, generator) for chunk in images.split(64)])
    return recover(crops)


def plain_path_samples() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    pipeline = transforms.Compose(
        [transforms.RandomCrop(SIZE, padding=PAD), transforms.RandomHorizontalFlip()]
    )
    source = Image.fromarray(marker_image().permute(1, 2, 0).numpy())
    torch.manual_seed(2)  # torchvision draws from the global generator
    crops = [torch.from_numpy(np.array(pipeline(source))).permute(2, 0, 1) for _ in range(SAMPLES)]
    return recover(torch.stack(crops))


def test_offsets_uniform_and_flip_rate_half_on_both_paths():
    results = {"device-side": device_side_samples(), "plain (PIL)": plain_path_samples()}
    tables = {}
    for name, (rows, cols, flipped) in results.items():
        counts = histogram(rows, cols)
        tables[name] = counts
        assert stats.chisquare(counts).pvalue > P_MIN, f"{name}: crop offsets not uniform: {counts}"
        for axis in (rows, cols):
            assert stats.chisquare(np.bincount(axis, minlength=2 * PAD + 1)).pvalue > P_MIN, name
        rate = flipped.mean()
        assert abs(rate - 0.5) < 4 * np.sqrt(0.25 / SAMPLES), f"{name}: flip rate {rate:.3f}"
        # Flips are independent of the offsets: the flip rate is the same for left and right halves.
        assert stats.chi2_contingency(np.array([
            np.bincount(cols[flipped], minlength=2 * PAD + 1),
            np.bincount(cols[~flipped], minlength=2 * PAD + 1),
        ])).pvalue > P_MIN, name
    same = stats.chi2_contingency(np.stack(list(tables.values())))
    assert same.pvalue > P_MIN, "device-side and PIL offset distributions differ"

"""torchvision transforms v2 pipelines built from ``data.transforms`` (see transform_config.py).

Pipelines map a decoded uint8 [3, H, W] image of any size to uint8 [3, h, w] at data.input_size;
normalisation stays batched on the device (augment.normalise), as for the tensor-resident datasets.

Randomness. torchvision's transforms draw from the global torch RNG. ``run_seeded`` seeds it per sample
from (pass seed, sample index) and restores it afterwards, so a sample's augmentation depends only on the
epoch's generator and the sample, never on which loader worker decodes it or how many there are, and the
training loop's own RNG state (saved in checkpoints for resume) is left untouched.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from cidpipe.data.transform_config import EvalTransform, TrainOp

Pipeline = Callable[[Tensor], Tensor]
_MASK64 = (1 << 64) - 1


def _interpolation(name: str):
    from torchvision.transforms import v2

    return {"bilinear": v2.InterpolationMode.BILINEAR, "bicubic": v2.InterpolationMode.BICUBIC,
            "nearest": v2.InterpolationMode.NEAREST}[name]


def _op(op: TrainOp, hw: tuple[int, int]):
    from torchvision.transforms import v2

    p = op.params
    builders = {
        "random_resized_crop": lambda: v2.RandomResizedCrop(
            hw, scale=p.scale, ratio=p.ratio, interpolation=_interpolation(p.interpolation), antialias=True),
        "random_crop": lambda: v2.RandomCrop(hw, padding=p.padding),
        "hflip": lambda: v2.RandomHorizontalFlip(p.p),
        "vflip": lambda: v2.RandomVerticalFlip(p.p),
        "color_jitter": lambda: v2.ColorJitter(p.brightness, p.contrast, p.saturation, p.hue),
        "randaugment": lambda: v2.RandAugment(p.num_ops, p.magnitude, p.num_magnitude_bins),
        "trivialaugment": lambda: v2.TrivialAugmentWide(p.num_magnitude_bins),
        "autoaugment": lambda: v2.AutoAugment(v2.AutoAugmentPolicy[p.policy.upper()]),
        "random_erasing": lambda: v2.RandomErasing(p.p, scale=p.scale, ratio=p.ratio, value=0),
    }
    return builders[op.name]()


def train_pipeline(ops: list[TrainOp], hw: tuple[int, int]) -> Pipeline:
    """The training pipeline; without a leading random_resized_crop the image is first resized to ``hw``
    (squashed, as the un-configured imagefolder path does)."""
    from torchvision.transforms import v2

    steps = [_op(op, hw) for op in ops]
    if not ops or ops[0].name != "random_resized_crop":
        steps.insert(0, v2.Resize(hw, antialias=True))
    return v2.Compose(steps)


def eval_pipeline(cfg: EvalTransform, hw: tuple[int, int]) -> Pipeline:
    """timm's eval transform: resize to size / crop_pct (the shorter side for a square input), centre crop."""
    from torchvision.transforms import v2

    height, width = hw
    if height == width:
        resize_to: int | tuple[int, int] = math.floor(height / cfg.crop_pct)
    else:
        resize_to = (math.floor(height / cfg.crop_pct), math.floor(width / cfg.crop_pct))
    return v2.Compose([v2.Resize(resize_to, interpolation=_interpolation(cfg.interpolation), antialias=True),
                       v2.CenterCrop(hw)])


def sample_seed(pass_seed: int, index: int) -> int:
    """A 63-bit seed of (pass, sample) mixed by splitmix64: neighbouring samples get unrelated streams."""
    z = (pass_seed + (index + 1) * 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return (z ^ (z >> 31)) >> 1


def run_seeded(pipeline: Pipeline, image: Tensor, seed: int) -> Tensor:
    """``pipeline(image)`` with the CPU RNG seeded by ``seed``, the caller's RNG state restored after."""
    state = torch.get_rng_state()
    # default_generator only: torch.manual_seed would also reseed every CUDA device's generator.
    torch.default_generator.manual_seed(seed)
    try:
        return pipeline(image)
    finally:
        torch.set_rng_state(state)

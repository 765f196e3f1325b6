"""The recipe's ``data`` section."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from cidpipe.sections import Section


class BiasConfig(Section):
    """Biased-MNIST style colour bias (ReBias protocol): see cidpipe/data/bias.py."""

    kind: Literal["auto", "background-colour", "border-colour"] = Field(
        "auto", description="auto: background for grayscale datasets (digits, fashion-mnist), else border"
    )
    rho: float = Field(
        0.99, ge=0.0, le=1.0, description="probability a training sample gets its class colour"
    )
    seed: int = 0
    border_width: int = Field(4, ge=1, description="frame width in pixels for border-colour")


class DataConfig(Section):
    name: str = Field(
        "digits", description="dataset registry name: digits, fashion-mnist, cifar10, cifar100, imagefolder"
    )
    root: Path | None = Field(None, description="directory holding the dataset files (not used by digits)")
    download: bool = Field(False, description="allow torchvision to download missing files")
    val_fraction: float = Field(
        0.1, ge=0.0, lt=1.0, description="share of the training set held out for model selection; 0 trains "
        "on all of it (the paper protocol, needs train.select: last)"
    )
    split_seed: int = Field(0, description="seed of the train/validation split")
    # Bounded so a typo fails as a recipe error (exit 2) instead of deep inside a model or the allocator:
    # below 8 px the CIFAR-style models (three stride-2 stages) have less than one feature pixel left;
    # above 4096 px one RGB image is 50 MB as uint8 (a batch of 64 over 3 GB), beyond any classifier here.
    input_size: int | None = Field(
        None, ge=8, le=4096, description="side of the square input, 8..4096; default per dataset (32)"
    )
    augment: bool = Field(
        True, description="random crop with padding + horizontal flip on the training split"
    )
    hflip: bool | None = Field(None, description="override the dataset's default for horizontal flips")
    limit_train: int | None = Field(
        None, ge=1, description="use only the first N training samples (quick runs)"
    )
    bias: BiasConfig | None = None
    batch_size: int = Field(64, ge=1)
    eval_batch_size: int = Field(256, ge=1)
    num_workers: int = Field(0, ge=0, description="DataLoader workers (imagefolder only)")
    device_resident: Literal["auto", "on", "off"] = Field(
        "auto", description="keep tensor-sized datasets on the training device and augment there"
    )

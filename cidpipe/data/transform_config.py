"""The recipe's ``data.transforms``: per-sample torchvision (transforms v2) pipelines for file-backed data.

Only a typed description lives here (no torch import, so reading a recipe stays fast); cidpipe/data/
transforms.py builds the torchvision pipeline from it. The names follow torchvision/timm:

    data:
      transforms:
        train: imagenet                     # a preset, or a list of ops:
        # train: [random_resized_crop, hflip, {color_jitter: {brightness: 0.4}}, randaugment]
        eval: {crop_pct: 0.875}             # resize to size/crop_pct, then centre crop
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    Discriminator,
    Field,
    SerializerFunctionWrapHandler,
    Tag,
    model_serializer,
    model_validator,
)

from cidpipe.sections import Section

Interpolation = Literal["bilinear", "bicubic", "nearest"]


class RandomResizedCropOp(Section):
    """torchvision RandomResizedCrop to data.input_size (first op of a pipeline; replaces the resize)."""

    scale: tuple[float, float] = Field((0.08, 1.0), description="range of the crop's share of the area")
    ratio: tuple[float, float] = Field((3 / 4, 4 / 3), description="range of the crop's aspect ratio")
    interpolation: Interpolation = "bilinear"


class RandomCropOp(Section):
    """torchvision RandomCrop at data.input_size after zero padding (the CIFAR recipe, per sample)."""

    padding: int = Field(4, ge=0, description="zero padding on every side before cropping")


class FlipOp(Section):
    p: float = Field(0.5, ge=0, le=1, description="probability of the flip")


class ColorJitterOp(Section):
    """torchvision ColorJitter; 0 switches a component off (timm's default is 0.4 for the first three)."""

    brightness: float = Field(0.4, ge=0)
    contrast: float = Field(0.4, ge=0)
    saturation: float = Field(0.4, ge=0)
    hue: float = Field(0.0, ge=0, le=0.5)


class RandAugmentOp(Section):
    """torchvision RandAugment (timm's rand-m9-n2 is num_ops 2, magnitude 9)."""

    num_ops: int = Field(2, ge=1)
    magnitude: int = Field(9, ge=0)
    num_magnitude_bins: int = Field(31, ge=2)


class TrivialAugmentOp(Section):
    """torchvision TrivialAugmentWide (no hyper-parameters besides the bins)."""

    num_magnitude_bins: int = Field(31, ge=2)


class AutoAugmentOp(Section):
    policy: Literal["imagenet", "cifar10", "svhn"] = "imagenet"


class RandomErasingOp(Section):
    """torchvision RandomErasing on the uint8 image: erased pixels are black (0) before normalisation."""

    p: float = Field(0.25, ge=0, le=1)
    scale: tuple[float, float] = (0.02, 0.33)
    ratio: tuple[float, float] = (0.3, 3.3)


class TrainOp(Section):
    """One op of the training pipeline: exactly one key set; a bare name (``hflip``) takes the defaults."""

    random_resized_crop: RandomResizedCropOp | None = None
    random_crop: RandomCropOp | None = None
    hflip: FlipOp | None = None
    vflip: FlipOp | None = None
    color_jitter: ColorJitterOp | None = None
    randaugment: RandAugmentOp | None = None
    trivialaugment: TrivialAugmentOp | None = None
    autoaugment: AutoAugmentOp | None = None
    random_erasing: RandomErasingOp | None = None

    @model_validator(mode="before")
    @classmethod
    def _bare_name(cls, value: Any) -> Any:
        value = {value: {}} if isinstance(value, str) else value
        if isinstance(value, dict):
            unknown = sorted(set(value) - set(cls.model_fields))
            if unknown:
                raise ValueError(f"unknown op {unknown[0]!r}; known: {', '.join(cls.model_fields)}")
        return value

    @model_validator(mode="after")
    def _exactly_one(self) -> TrainOp:
        chosen = [name for name in type(self).model_fields if getattr(self, name) is not None]
        if len(chosen) != 1:
            raise ValueError(f"each op sets exactly one of {', '.join(type(self).model_fields)}; "
                             f"got {', '.join(chosen) or 'none'}")
        return self

    @model_serializer(mode="wrap")
    def _only_the_op(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # {name: params}, as written in a recipe, instead of eight nulls around the one op.
        return {self.name: handler(self)[self.name]}

    @property
    def name(self) -> str:
        return next(name for name in type(self).model_fields if getattr(self, name) is not None)

    @property
    def params(self) -> Section:
        return getattr(self, self.name)


# timm's default training transform (RandomResizedCrop + flip + ColorJitter 0.4), its RandAugment
# variant, and plain resizing (no augmentation).
TRAIN_PRESETS: dict[str, list[str]] = {
    "imagenet": ["random_resized_crop", "hflip", "color_jitter"],
    "imagenet-randaugment": ["random_resized_crop", "hflip", "randaugment"],
    "none": [],
}


# One member of the union is validated, chosen by type (a list is ops), so errors name the actual problem.
TrainTransform = Annotated[
    Annotated[Literal["imagenet", "imagenet-randaugment", "none"], Tag("preset")]
    | Annotated[list[TrainOp], Tag("ops")],
    Discriminator(lambda value: "ops" if isinstance(value, list | tuple) else "preset"),
]


class EvalTransform(Section):
    """Deterministic evaluation transform: resize to size / crop_pct, then centre crop to size (timm)."""

    crop_pct: float = Field(
        0.875, gt=0, le=1, description="share of the resized image the centre crop keeps; 1 = resize the "
        "shorter side to the input size and crop the longer one"
    )
    interpolation: Interpolation = "bilinear"


class TransformsConfig(Section):
    """Per-sample torchvision v2 augmentation (file-backed datasets such as imagefolder only).

    Replaces the built-in batched pad+crop+flip (data.augment/hflip) of file-backed splits; the random
    numbers are drawn from (epoch, sample), so runs are identical for any data.num_workers and resume.
    """

    train: TrainTransform = Field(
        "imagenet", description="a preset (imagenet = random_resized_crop, hflip, color_jitter; "
        "imagenet-randaugment; none) or a list of ops, each a name or {name: {params}}: "
        "random_resized_crop, random_crop, hflip, vflip, color_jitter, randaugment, trivialaugment, "
        "autoaugment, random_erasing"
    )
    eval: EvalTransform = Field(
        default_factory=EvalTransform, description="resize + centre crop for validation, test and the "
        "un-augmented views (teacher cache, calibration, mean/std: auto)"
    )

    def train_ops(self) -> list[TrainOp]:
        if isinstance(self.train, str):
            return [TrainOp.model_validate(name) for name in TRAIN_PRESETS[self.train]]
        return list(self.train)

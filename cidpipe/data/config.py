"""The recipe's ``data`` section."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    Discriminator,
    Field,
    SerializationInfo,
    SerializerFunctionWrapHandler,
    Tag,
    WithJsonSchema,
    model_serializer,
    model_validator,
)

from cidpipe.data.transform_config import TransformsConfig
from cidpipe.sections import Section, for_display

# Bounded so a typo fails as a recipe error (exit 2) instead of deep inside a model or the allocator:
# below 8 px the CIFAR-style models (three stride-2 stages) have less than one feature pixel left;
# above 4096 px one RGB image is 50 MB as uint8 (a batch of 64 over 3 GB), beyond any classifier here.
ImageSide = Annotated[int, Field(ge=8, le=4096)]


def _auto_or_values(value: Any) -> str:
    # The scalar member of mean/std: 'auto' is the only scalar; say what else the key takes.
    if value != "auto":
        raise ValueError("give 'auto' or one value per channel on the 0..1 scale, e.g. [0.5, 0.5, 0.5]")
    return value


# Validated as 'auto' by _auto_or_values (to name the list form in its error), documented as the literal.
AutoOnly = Annotated[
    Any, AfterValidator(_auto_or_values), WithJsonSchema({"const": "auto", "type": "string"})
]


def _by_python_type(scalar_tag: str, list_tag: str):
    # Validate against one member of a union only, chosen by the input's type: an error then names what
    # is wrong with that member instead of the first member of the union it was never meant for.
    return Discriminator(lambda value: list_tag if isinstance(value, list | tuple) else scalar_tag)


InputSize = Annotated[Annotated[ImageSide, Tag("side")] | Annotated[tuple[ImageSide, ImageSide], Tag("hw")],
                      _by_python_type("side", "hw")]
def _on_unit_scale(values: list[float]) -> list[float]:
    # torchvision/timm write ImageNet's statistics on the 0..1 scale; mmcv-style configs use 0..255
    # (123.675, 58.395). Silently accepted, those would feed the model images near -2 everywhere.
    if any(not 0.0 <= value <= 1.0 for value in values):
        raise ValueError("values are on the 0..1 scale of pixel/255; divide 0..255 values (e.g. 123.675) by "
                         "255")
    return values


ChannelValues = Annotated[list[float], AfterValidator(_on_unit_scale)]
ChannelStds = Annotated[list[Annotated[float, Field(gt=0)]], AfterValidator(_on_unit_scale)]
Mean = Annotated[Annotated[AutoOnly, Tag("auto")] | Annotated[ChannelValues, Tag("values")],
                 _by_python_type("auto", "values")]
Std = Annotated[Annotated[AutoOnly, Tag("auto")] | Annotated[ChannelStds, Tag("values")],
                _by_python_type("auto", "values")]
# Keys added after runs were published: left out of the dumps (and so of stage ids) at these defaults.
_OMIT_AT_DEFAULT = {"mean": None, "std": None, "transforms": None}


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
    input_size: InputSize | None = Field(
        None, description="side of the square input, or [height, width], each 8..4096; default per "
        "dataset (32)"
    )
    mean: Mean | None = Field(
        None, description="per-channel mean (0..1 scale) used to normalise; auto = computed from the "
        "training split (recorded in the manifest); default per dataset"
    )
    std: Std | None = Field(
        None, description="per-channel std (0..1 scale), as mean"
    )
    transforms: TransformsConfig | None = Field(
        None, description="per-sample torchvision v2 augmentation and eval resize/crop for file-backed "
        "datasets (imagefolder); replaces the batched pad+crop+flip there"
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
    # The default stays 0 (not "auto") because this key was always dumped into stage ids: changing it
    # would re-key every published run. The number of workers does not change a single batch.
    num_workers: Annotated[int, Field(ge=0)] | Literal["auto"] = Field(
        0, description="DataLoader workers decoding file-backed datasets (imagefolder); auto = "
        "min(4, CPU cores); workers persist across epochs, memory is pinned for CUDA"
    )
    device_resident: Literal["auto", "on", "off"] = Field(
        "auto", description="keep tensor-sized datasets on the training device and augment there"
    )

    @model_validator(mode="after")
    def _transforms_need_files(self) -> DataConfig:
        # A resident (decoded once) split is augmented batch-wise on the device: the per-sample
        # torchvision pipeline could not run, and the recipe would silently train without it.
        if self.transforms is not None and self.device_resident == "on":
            raise ValueError("data.transforms runs per sample while decoding files; it cannot be combined "
                             "with device_resident: on (use auto or off)")
        return self

    @model_serializer(mode="wrap")
    def _omit_new_defaults(
        self, handler: SerializerFunctionWrapHandler, info: SerializationInfo
    ) -> dict[str, Any]:
        # Stage ids hash this dump: keys at the defaults they were added with stay out of it, so runs
        # published before they existed keep their ids (as OptimConfig does for select).
        dumped = handler(self)
        if for_display(info):
            return dumped
        for key, default in _OMIT_AT_DEFAULT.items():
            if getattr(self, key) == default:
                dumped.pop(key, None)
        return dumped

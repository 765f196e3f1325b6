"""Model and optimisation sections shared by the teacher (``train``) and the student (``distill``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    SerializationInfo,
    SerializerFunctionWrapHandler,
    model_serializer,
    model_validator,
)

from cidpipe.data.config import ChannelStds, ChannelValues, InputSize
from cidpipe.errors import ConfigError
from cidpipe.sections import Section, for_display

DEFAULT_SELECT = "best_val"


class ModelConfig(Section):
    arch: str = Field(
        ...,
        description="a registry name (resnet8x4, wrn_40_2, mobilenetv2, ...), timm:<name>, "
        "torchvision:<name> or python:<module>:<function> (called as function(num_classes=..., **kwargs))",
    )
    kwargs: dict[str, bool | int | float | str | None | list[bool | int | float | str | None]] = Field(
        default_factory=dict, description="keyword arguments for the timm/torchvision/python builder"
    )
    weights: Path | None = Field(
        None, description="start from this state dict (safetensors or torch weights) in the library's own "
        "layout, e.g. torch.save(model.state_dict()) of that timm/torchvision model; a different class "
        "count re-initialises the classifier",
    )
    # The older spelling of ``weights``: both keys are accepted and always hold the same value.
    checkpoint: Path | None = Field(None, description="alias of weights")
    pretrained: bool = Field(
        False, description="timm/torchvision only: the library's own pretrained weights (from its cache "
        "or downloaded by it)",
    )

    def model_post_init(self, context: Any, /) -> None:
        # Plain post-init (no validator) on purpose: it runs once after validation, and the assignments
        # below do not re-enter it the way an after-validator would under validate_assignment.
        if self.weights is not None and self.checkpoint is not None and self.weights != self.checkpoint:
            raise ConfigError(
                f"model.weights ({self.weights}) and model.checkpoint ({self.checkpoint}) disagree; "
                "give only model.weights (checkpoint is its older name)"
            )
        path = self.weights if self.weights is not None else self.checkpoint
        if path is not None and (self.weights is None or self.checkpoint is None):
            self.weights = self.checkpoint = path
        if self.pretrained and not self.arch.startswith(("timm:", "torchvision:")):
            raise ConfigError(
                f"model.pretrained needs a timm: or torchvision: arch, not {self.arch!r}; "
                "pass model.weights instead"
            )
        if self.pretrained and path is not None:
            raise ConfigError("model.pretrained and model.weights are both set; keep one of them")
        if self.kwargs and ":" not in self.arch:
            raise ConfigError(
                f"model.kwargs is for timm:/torchvision:/python: archs; the registry model {self.arch!r} "
                "takes none"
            )
        set_by_cidpipe = {"num_classes", "in_chans", "in_channels", "pretrained", "weights"}
        reserved = sorted(set(self.kwargs) & set_by_cidpipe)
        if reserved:
            raise ConfigError(
                f"model.kwargs.{reserved[0]} is set by cidpipe (from the dataset / model.pretrained / "
                "model.weights); remove it from model.kwargs"
            )

    @model_serializer(mode="wrap")
    def _omit_new_defaults(
        self, handler: SerializerFunctionWrapHandler, info: SerializationInfo
    ) -> dict[str, Any]:
        # Stage ids hash the dumped section: a recipe that uses none of the bring-your-own-model keys dumps
        # exactly as before ({arch, checkpoint}), so finished runs keep their ids. ``weights`` is dumped
        # under its older name ``checkpoint`` (they are the same value).
        dumped = handler(self)
        if for_display(info):  # the documented key only
            dumped.pop("checkpoint", None)
            return dumped
        weights = dumped.pop("weights", None)
        if weights is not None:  # also when ``weights`` alone was assigned after validation
            dumped["checkpoint"] = weights
        if not self.kwargs:
            dumped.pop("kwargs", None)
        if not self.pretrained:
            dumped.pop("pretrained", None)
        return dumped


class OptimConfig(Section):
    epochs: int = Field(240, ge=1)
    lr: float | None = Field(
        None, gt=0, description="default 0.05, or 0.01 for MobileNetV2/ShuffleNet (SGD); required for adamw"
    )
    optimizer: Literal["sgd", "adamw"] = Field(
        "sgd", description="sgd (momentum, nesterov: the paper's) or adamw (betas; weight_decay decoupled)"
    )
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum")
    nesterov: bool = True
    betas: tuple[Annotated[float, Field(ge=0, lt=1)], Annotated[float, Field(ge=0, lt=1)]] = Field(
        (0.9, 0.999), description="AdamW's (beta1, beta2)"
    )
    weight_decay: float = Field(5e-4, ge=0)
    schedule: Literal["multistep", "cosine"] = "multistep"
    warmup_epochs: int = Field(
        0, ge=0, description="linear LR warm-up: epoch e < warmup_epochs runs at (e+1)/(warmup_epochs+1) of "
        "the schedule's LR"
    )
    label_smoothing: float = Field(
        0.0, ge=0, lt=1, description="label smoothing of the cross-entropy terms (the teacher's CE and the "
        "student's CE term in every method, CID's included); 0 = plain CE"
    )
    backbone_lr_scale: float = Field(
        1.0, ge=0, description="LR factor of the student's parameters outside its final classifier "
        "(e.g. 0.1 for a pretrained backbone)"
    )
    head_lr_scale: float = Field(
        1.0, ge=0, description="LR factor of the final classifier (model.classifier) and of the method's "
        "own modules (CID's head g, regressors)"
    )
    milestones: list[int] = Field(
        [150, 180, 210], description="LR x gamma after these epochs, given for reference_epochs and scaled"
    )
    reference_epochs: int = Field(240, ge=1, description="the schedule the milestones were written for")
    gamma: float = Field(0.1, gt=0, le=1, description="multistep LR factor")
    amp: Literal["auto", "off", "bf16", "fp16"] = Field(
        "auto", description="autocast dtype; auto = bf16 on CUDA"
    )
    channels_last: bool | None = Field(None, description="default: on for CUDA")
    compile: bool = Field(False, description="torch.compile the training step (opt-in)")
    compile_mode: Literal["default", "reduce-overhead", "max-autotune-no-cudagraphs"] = Field(
        "default", description="torch.compile mode when compile is on; reduce-overhead replays the step "
        "as CUDA graphs (GPU only: cuts the kernel-launch cost that bounds small models at batch 64)"
    )
    seeds: list[int] = Field(
        [0], min_length=1, description="one run per seed; results reported as mean ± std"
    )
    select: Literal["best_val", "last"] = Field(
        DEFAULT_SELECT,
        description="which epoch's model is kept: best_val = the highest validation top-1 (never the test "
        "split), last = the last epoch (the paper protocol, with data.val_fraction: 0)",
    )

    @model_serializer(mode="wrap")
    def _omit_default_select(
        self, handler: SerializerFunctionWrapHandler, info: SerializationInfo
    ) -> dict[str, Any]:
        # Stage and recipe ids hash the dumped sections: at its default the key added for the paper
        # protocol stays out of them, so runs finished before it existed keep their ids (and stay cached).
        # The same holds for every key added later (OPTIM_KEYS_ADDED_LATER).
        dumped = handler(self)
        if for_display(info):
            return dumped
        if self.select == DEFAULT_SELECT:
            dumped.pop("select", None)
        for key, default in OPTIM_KEYS_ADDED_LATER.items():
            if getattr(self, key) == default:
                dumped.pop(key, None)
        return dumped

    @model_validator(mode="after")
    def _adamw_needs_lr(self) -> OptimConfig:
        # The default LRs (0.05 / 0.01) are SGD's; AdamW diverges with them, so it must be chosen.
        if self.optimizer == "adamw" and self.lr is None:
            raise ValueError("optimizer adamw needs an explicit lr (the default 0.05 is SGD's); "
                             "e.g. lr: 0.001")
        return self


# Keys added to OptimConfig after runs were published, at the defaults that reproduce those runs.
OPTIM_KEYS_ADDED_LATER: dict[str, Any] = {
    "optimizer": "sgd", "betas": (0.9, 0.999), "warmup_epochs": 0, "label_smoothing": 0.0,
    "backbone_lr_scale": 1.0, "head_lr_scale": 1.0,
}


def check_model_selection(train: OptimConfig, val_fraction: float, section: str) -> None:
    """``select: best_val`` needs a validation split to select on: refuse it with ``val_fraction: 0``."""
    if train.select == "best_val" and val_fraction == 0:
        raise ConfigError(
            f"{section}.train.select is best_val but data.val_fraction is 0, so there is no validation split "
            f"to select on; set {section}.train.select: last (keep the last epoch) or a val_fraction above 0"
        )


class TeacherInputConfig(Section):
    """What the teacher sees when it differs from the student's input: its own size and statistics.

    The teacher stage trains / imports / evaluates at these, and the student stage feeds it the student's
    images resized and re-normalised to them (cidpipe.models.InputAdapter), as timm's distillation does.
    """

    input_size: InputSize | None = Field(
        None, description="the teacher's input side or [height, width] (e.g. 224); default: data.input_size"
    )
    mean: ChannelValues | None = Field(
        None, description="the teacher's per-channel mean (0..1 scale); default: the data's"
    )
    std: ChannelStds | None = Field(
        None, description="the teacher's per-channel std (0..1 scale); default: the data's"
    )

    def overrides(self) -> dict[str, Any]:
        return {key: value for key, value in self.model_dump().items() if value is not None}


class TeacherConfig(Section):
    model: ModelConfig
    train: OptimConfig = OptimConfig()
    input: TeacherInputConfig | None = Field(
        None, description="the teacher's own input size / mean / std when they differ from the student's"
    )

    @model_serializer(mode="wrap")
    def _omit_unset_input(
        self, handler: SerializerFunctionWrapHandler, info: SerializationInfo
    ) -> dict[str, Any]:
        dumped = handler(self)  # unset, the key stays out of the teacher's id
        if for_display(info):
            return dumped
        if dumped.get("input") is None:
            dumped.pop("input", None)
        return dumped


class StudentConfig(Section):
    model: ModelConfig
    train: OptimConfig = OptimConfig()

"""Model and optimisation sections shared by the teacher (``train``) and the student (``distill``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SerializerFunctionWrapHandler, model_serializer

from cidpipe.errors import ConfigError
from cidpipe.sections import Section

DEFAULT_SELECT = "best_val"


class ModelConfig(Section):
    arch: str = Field(..., description="model registry name, e.g. resnet8x4, wrn_40_2, mobilenetv2")
    checkpoint: Path | None = Field(
        None, description="start from these weights (safetensors or torch weights) instead of training"
    )


class OptimConfig(Section):
    epochs: int = Field(240, ge=1)
    lr: float | None = Field(None, gt=0, description="default 0.05, or 0.01 for MobileNetV2/ShuffleNet")
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum")
    nesterov: bool = True
    weight_decay: float = Field(5e-4, ge=0)
    schedule: Literal["multistep", "cosine"] = "multistep"
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
    def _omit_default_select(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # Stage and recipe ids hash the dumped sections: at its default the key added for the paper
        # protocol stays out of them, so runs finished before it existed keep their ids (and stay cached).
        dumped = handler(self)
        if self.select == DEFAULT_SELECT:
            dumped.pop("select", None)
        return dumped


def check_model_selection(train: OptimConfig, val_fraction: float, section: str) -> None:
    """``select: best_val`` needs a validation split to select on: refuse it with ``val_fraction: 0``."""
    if train.select == "best_val" and val_fraction == 0:
        raise ConfigError(
            f"{section}.train.select is best_val but data.val_fraction is 0, so there is no validation split "
            f"to select on; set {section}.train.select: last (keep the last epoch) or a val_fraction above 0"
        )


class TeacherConfig(Section):
    enabled: bool = True
    model: ModelConfig
    train: OptimConfig = OptimConfig()


class StudentConfig(Section):
    model: ModelConfig
    train: OptimConfig = OptimConfig()

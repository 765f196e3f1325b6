"""CIFAR ResNets (He et al. 2016, section 4.2) as used by the RepDistiller benchmark.

Depth 6n+2 with three stages of n basic blocks; stage widths 16/32/64 (resnet8...110) or 64/128/256 with a
32-channel stem (the "x4" variants). Projection shortcuts (1x1 conv + BN) wherever shape changes.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from cidpipe.models.base import ClassifierModel, conv_bn, global_avg_pool, init_conv_bn
from cidpipe.models.registry import register_model


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with a residual connection, ReLU after the sum."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv_bn1 = conv_bn(in_channels, out_channels, 3, stride)
        self.conv_bn2 = conv_bn(out_channels, out_channels, 3)
        needs_projection = stride != 1 or in_channels != out_channels
        self.shortcut = conv_bn(in_channels, out_channels, 1, stride) if needs_projection else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.conv_bn1(x))
        out = self.conv_bn2(out)
        return F.relu(out + self.shortcut(x))


class CifarResNet(ClassifierModel):
    def __init__(self, depth: int, widths: tuple[int, int, int, int], num_classes: int, in_channels: int = 3):
        if (depth - 2) % 6 != 0:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2, got {depth}")
        blocks_per_stage = (depth - 2) // 6
        stem_width, *stage_widths = widths
        super().__init__(num_classes, stage_widths[-1])
        self.stem = nn.Sequential(conv_bn(in_channels, stem_width, 3), nn.ReLU())
        stages = []
        channels = stem_width
        for index, width in enumerate(stage_widths):
            blocks = []
            for block_index in range(blocks_per_stage):
                stride = 2 if index > 0 and block_index == 0 else 1
                blocks.append(BasicBlock(channels, width, stride))
                channels = width
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        init_conv_bn(self)

    def forward_features(self, x: Tensor) -> Tensor:
        return global_avg_pool(self.stages(self.stem(x)))


_NARROW = (16, 16, 32, 64)
_WIDE = (32, 64, 128, 256)
# Published sizes (100 classes) from the RepDistiller / CRD tables.
_REFERENCE_M = {"resnet20": 0.28, "resnet56": 0.86, "resnet8x4": 1.23, "resnet32x4": 7.43}


def _register(name: str, depth: int, widths: tuple[int, int, int, int]) -> None:
    @register_model(name, family="cifar_resnet", reference_params_m=_REFERENCE_M.get(name))
    def build(num_classes: int, in_channels: int = 3) -> ClassifierModel:
        return CifarResNet(depth, widths, num_classes, in_channels)


for _depth in (8, 14, 20, 32, 44, 56, 110):
    _register(f"resnet{_depth}", _depth, _NARROW)
_register("resnet8x4", 8, _WIDE)
_register("resnet32x4", 32, _WIDE)

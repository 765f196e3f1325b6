"""ImageNet-style ResNets (stages of 64/128/256/512) adapted to 32x32 input.

The CIFAR adaptation used by RepDistiller/CRD: a 3x3 stride-1 stem and no max pool, so the four stages see
32/16/8/4 pixels. ``resnet50_cifar`` is the paper's "ResNet50" teacher.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from cidpipe.models.base import ClassifierModel, conv_bn, global_avg_pool, init_conv_bn
from cidpipe.models.registry import register_model


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_channels: int, planes: int, stride: int) -> None:
        super().__init__()
        out_channels = planes * self.expansion
        self.residual = nn.Sequential(
            conv_bn(in_channels, planes, 3, stride), nn.ReLU(), conv_bn(planes, out_channels, 3))
        needs_projection = stride != 1 or in_channels != out_channels
        self.shortcut = conv_bn(in_channels, out_channels, 1, stride) if needs_projection else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.residual(x) + self.shortcut(x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_channels: int, planes: int, stride: int) -> None:
        super().__init__()
        out_channels = planes * self.expansion
        self.residual = nn.Sequential(
            conv_bn(in_channels, planes, 1), nn.ReLU(),
            conv_bn(planes, planes, 3, stride), nn.ReLU(),
            conv_bn(planes, out_channels, 1),
        )
        needs_projection = stride != 1 or in_channels != out_channels
        self.shortcut = conv_bn(in_channels, out_channels, 1, stride) if needs_projection else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.residual(x) + self.shortcut(x))


class CifarImageNetResNet(ClassifierModel):
    def __init__(self, block: type[BasicBlock] | type[Bottleneck], blocks: tuple[int, int, int, int],
                 num_classes: int, in_channels: int = 3) -> None:
        super().__init__(num_classes, 512 * block.expansion)
        self.stem = nn.Sequential(conv_bn(in_channels, 64, 3), nn.ReLU())
        stages = []
        channels = 64
        for index, (planes, count) in enumerate(zip((64, 128, 256, 512), blocks, strict=True)):
            units = []
            for unit_index in range(count):
                stride = 2 if index > 0 and unit_index == 0 else 1
                units.append(block(channels, planes, stride))
                channels = planes * block.expansion
            stages.append(nn.Sequential(*units))
        self.stages = nn.Sequential(*stages)
        init_conv_bn(self)

    def forward_features(self, x: Tensor) -> Tensor:
        return global_avg_pool(self.stages(self.stem(x)))


_CONFIGS = {
    "resnet10_cifar": (BasicBlock, (1, 1, 1, 1), None),
    "resnet18_cifar": (BasicBlock, (2, 2, 2, 2), None),
    "resnet34_cifar": (BasicBlock, (3, 4, 6, 3), None),
    "resnet50_cifar": (Bottleneck, (3, 4, 6, 3), 23.71),
}


def _register(name: str) -> None:
    block, blocks, reference = _CONFIGS[name]

    @register_model(name, family="resnet_cifar", reference_params_m=reference)
    def build(num_classes: int, in_channels: int = 3) -> ClassifierModel:
        return CifarImageNetResNet(block, blocks, num_classes, in_channels)


for _name in _CONFIGS:
    _register(_name)

"""MobileNetV2 (Sandler et al. 2018), the half-width CIFAR variant of the RepDistiller benchmark.

Stem 3x3 stride-2 conv, then inverted-residual stages (expansion t, channels c, repeats n, stride s) with
expansion 6, channels scaled by the width multiplier 0.5, a 1x1 conv to 1280 channels, global pooling and
Linear(1280, K). Unlike torchvision's variant, every block (also t=1) keeps its 1x1 expansion conv.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from cidpipe.models.base import ClassifierModel, conv_bn, global_avg_pool, init_conv_bn
from cidpipe.models.registry import register_model

EXPANSION = 6
# (expansion, channels, repeats, first stride) per stage; expansion None means EXPANSION.
_STAGES = ((1, 16, 1, 1), (None, 24, 2, 1), (None, 32, 3, 2), (None, 64, 4, 2), (None, 96, 3, 1),
           (None, 160, 3, 2), (None, 320, 1, 1))
LAST_CHANNELS = 1280


class InvertedResidual(nn.Module):
    """1x1 expand - ReLU - 3x3 depthwise - ReLU - 1x1 linear projection; residual when shapes match."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = in_channels * expansion
        self.block = nn.Sequential(
            conv_bn(in_channels, hidden, 1), nn.ReLU(),
            conv_bn(hidden, hidden, 3, stride, groups=hidden), nn.ReLU(),
            conv_bn(hidden, out_channels, 1),
        )
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x: Tensor) -> Tensor:
        out = self.block(x)
        return x + out if self.residual else out


class CifarMobileNetV2(ClassifierModel):
    def __init__(self, num_classes: int, in_channels: int = 3, width_multiplier: float = 0.5) -> None:
        super().__init__(num_classes, LAST_CHANNELS)
        channels = int(32 * width_multiplier)
        layers: list[nn.Module] = [conv_bn(in_channels, channels, 3, 2), nn.ReLU()]
        for expansion, base_channels, repeats, first_stride in _STAGES:
            out_channels = int(base_channels * width_multiplier)
            for repeat in range(repeats):
                stride = first_stride if repeat == 0 else 1
                layers.append(InvertedResidual(channels, out_channels, stride, expansion or EXPANSION))
                channels = out_channels
        self.features = nn.Sequential(*layers)
        self.head = conv_bn(channels, LAST_CHANNELS, 1)
        init_conv_bn(self, linear_std=0.01)

    def forward_features(self, x: Tensor) -> Tensor:
        return global_avg_pool(F.relu(self.head(self.features(x))))


@register_model("mobilenetv2", family="mobilenetv2", default_lr=0.01, reference_params_m=0.81)
def build_mobilenetv2(num_classes: int, in_channels: int = 3) -> ClassifierModel:
    return CifarMobileNetV2(num_classes, in_channels, width_multiplier=0.5)

"""A three-layer CNN for tests and the quickstart: trains in seconds on CPU, accepts inputs from 8x8 up."""

from __future__ import annotations

from torch import Tensor, nn

from cidpipe.models.base import ClassifierModel, conv_bn, global_avg_pool, init_conv_bn
from cidpipe.models.registry import register_model


class TinyCNN(ClassifierModel):
    def __init__(self, num_classes: int, in_channels: int = 3, widths: tuple[int, int, int] = (16, 32, 64)):
        super().__init__(num_classes, widths[-1])
        layers: list[nn.Module] = []
        channels = in_channels
        for index, width in enumerate(widths):
            layers += [conv_bn(channels, width, 3, stride=1 if index == 0 else 2), nn.ReLU()]
            channels = width
        self.features = nn.Sequential(*layers)
        init_conv_bn(self)

    def forward_features(self, x: Tensor) -> Tensor:
        return global_avg_pool(self.features(x))


@register_model("tinycnn", family="tiny")
def build_tinycnn(num_classes: int, in_channels: int = 3) -> ClassifierModel:
    return TinyCNN(num_classes, in_channels)

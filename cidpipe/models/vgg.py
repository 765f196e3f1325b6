"""VGG with batch norm for 32x32 input, in the RepDistiller benchmark's layout.

Five stages of 3x3 conv-BN-ReLU layers; 2x2 max pooling after the first three stages, global average
pooling after the last, then a single Linear(512, K). vgg8 has one conv per stage ([64],[128],[256],[512],
[512]). The benchmark also max-pools after stage 4 when the input is 64x64; here global pooling takes any
input size instead, so the graph has no shape-dependent branch (identical for 32x32 input).
"""

from __future__ import annotations

from torch import Tensor, nn

from cidpipe.models.base import ClassifierModel, global_avg_pool, init_conv_bn
from cidpipe.models.registry import register_model

_STAGES: dict[str, tuple[tuple[int, ...], ...]] = {
    "vgg8": ((64,), (128,), (256,), (512,), (512,)),
    "vgg11": ((64,), (128,), (256, 256), (512, 512), (512, 512)),
    "vgg13": ((64, 64), (128, 128), (256, 256), (512, 512), (512, 512)),
    "vgg16": ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512)),
    "vgg19": ((64, 64), (128, 128), (256, 256, 256, 256), (512, 512, 512, 512), (512, 512, 512, 512)),
}
_POOLED_STAGES = 3  # max pool after stages 0, 1, 2: 32 -> 4
_REFERENCE_M = {"vgg8": 3.97, "vgg13": 9.46}


class CifarVGG(ClassifierModel):
    def __init__(self, stages: tuple[tuple[int, ...], ...], num_classes: int, in_channels: int = 3) -> None:
        super().__init__(num_classes, stages[-1][-1])
        layers: list[nn.Module] = []
        channels = in_channels
        for index, widths in enumerate(stages):
            for width in widths:
                # Conv bias kept (the benchmark's layers have it) so parameter counts match the tables.
                layers += [nn.Conv2d(channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU()]
                channels = width
            if index < _POOLED_STAGES:
                layers.append(nn.MaxPool2d(2, 2))
        self.features = nn.Sequential(*layers)
        init_conv_bn(self, linear_std=0.01)

    def forward_features(self, x: Tensor) -> Tensor:
        return global_avg_pool(self.features(x))


def _register(name: str) -> None:
    @register_model(name, family="vgg", reference_params_m=_REFERENCE_M.get(name))
    def build(num_classes: int, in_channels: int = 3) -> ClassifierModel:
        return CifarVGG(_STAGES[name], num_classes, in_channels)


for _name in _STAGES:
    _register(_name)

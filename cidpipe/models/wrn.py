"""Wide ResNets (Zagoruyko & Komodakis 2016) for 32x32 input, as in the RepDistiller benchmark.

wrn_<depth>_<k>: depth 6n+4, three stages of n pre-activation blocks with widths 16k/32k/64k after a
16-channel stem, BN-ReLU before pooling. Dropout is 0 (the benchmark's setting), so it is left out.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from cidpipe.models.base import ClassifierModel, global_avg_pool, init_conv_bn
from cidpipe.models.registry import register_model


class PreActBlock(nn.Module):
    """BN-ReLU-conv3x3 twice; the shortcut is a 1x1 conv of the activated input when the shape changes."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, padding=1, bias=False)
        self.same_shape = in_channels == out_channels and stride == 1
        self.projection = (
            None if self.same_shape else nn.Conv2d(in_channels, out_channels, 1, stride, bias=False)
        )

    def forward(self, x: Tensor) -> Tensor:
        activated = F.relu(self.bn1(x))
        out = self.conv2(F.relu(self.bn2(self.conv1(activated))))
        # Like the original WRN, a projecting block feeds the *activated* input to its shortcut.
        shortcut = x if self.projection is None else self.projection(activated)
        return out + shortcut


class WideResNet(ClassifierModel):
    def __init__(self, depth: int, widen_factor: int, num_classes: int, in_channels: int = 3) -> None:
        if (depth - 4) % 6 != 0:
            raise ValueError(f"WRN depth must be 6n+4, got {depth}")
        blocks_per_stage = (depth - 4) // 6
        widths = (16 * widen_factor, 32 * widen_factor, 64 * widen_factor)
        super().__init__(num_classes, widths[-1])
        self.stem = nn.Conv2d(in_channels, 16, 3, 1, padding=1, bias=False)
        stages = []
        channels = 16
        for index, width in enumerate(widths):
            blocks = []
            for block_index in range(blocks_per_stage):
                stride = 2 if index > 0 and block_index == 0 else 1
                blocks.append(PreActBlock(channels, width, stride))
                channels = width
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.final_bn = nn.BatchNorm2d(channels)
        init_conv_bn(self)
        nn.init.zeros_(self.classifier.bias)

    def forward_features(self, x: Tensor) -> Tensor:
        return global_avg_pool(F.relu(self.final_bn(self.stages(self.stem(x)))))


_REFERENCE_M = {(16, 2): 0.70, (40, 1): 0.57, (40, 2): 2.26}


def _register(depth: int, widen_factor: int) -> None:
    name = f"wrn_{depth}_{widen_factor}"

    @register_model(name, family="wrn", reference_params_m=_REFERENCE_M.get((depth, widen_factor)))
    def build(num_classes: int, in_channels: int = 3) -> ClassifierModel:
        return WideResNet(depth, widen_factor, num_classes, in_channels)


for _depth, _widen in ((16, 1), (16, 2), (40, 1), (40, 2), (40, 4)):
    _register(_depth, _widen)

"""ShuffleNet V1 (Zhang et al. 2018) and V2 (Ma et al. 2018), CIFAR variants of the RepDistiller benchmark.

V1: 1x1 stem to 24 channels, stages of 4/8/4 grouped bottlenecks (3 groups) with widths 240/480/960; the
first block of each stage has stride 2 and concatenates an average-pooled shortcut.
V2 (1x): 3x3 stem to 24 channels, stages of one down-sampling block plus 3/7/3 split blocks with widths
116/232/464, then a 1x1 conv to 1024. Both pool globally before one linear layer.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cidpipe.models.base import ClassifierModel, conv_bn, global_avg_pool
from cidpipe.models.registry import register_model


def channel_shuffle(x: Tensor, groups: int) -> Tensor:
    """Interleave channel groups; written with unflatten/flatten so batch and spatial sizes stay dynamic."""
    return x.unflatten(1, (groups, x.shape[1] // groups)).transpose(1, 2).flatten(1, 2)


class GroupedBottleneck(nn.Module):
    """ShuffleNet V1 unit: grouped 1x1 - shuffle - 3x3 depthwise - grouped 1x1 (+ shortcut)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, groups: int) -> None:
        super().__init__()
        mid_channels = out_channels // 4
        # The 24-channel stem output is too narrow to split into groups for the first 1x1 conv.
        first_groups = 1 if in_channels == 24 else groups
        self.groups = groups
        self.reduce = conv_bn(in_channels, mid_channels, 1, groups=first_groups)
        self.depthwise = conv_bn(mid_channels, mid_channels, 3, stride, groups=mid_channels)
        self.expand = conv_bn(mid_channels, out_channels, 1, groups=groups)
        self.downsample = nn.AvgPool2d(3, stride=2, padding=1) if stride == 2 else None

    def forward(self, x: Tensor) -> Tensor:
        out = channel_shuffle(F.relu(self.reduce(x)), self.groups)
        out = self.expand(F.relu(self.depthwise(out)))
        if self.downsample is not None:
            return F.relu(torch.cat([out, self.downsample(x)], dim=1))
        return F.relu(out + x)


class ShuffleNetV1(ClassifierModel):
    def __init__(self, num_classes: int, in_channels: int = 3, widths: tuple[int, ...] = (240, 480, 960),
                 blocks: tuple[int, ...] = (4, 8, 4), groups: int = 3) -> None:
        super().__init__(num_classes, widths[-1])
        self.stem = nn.Sequential(conv_bn(in_channels, 24, 1), nn.ReLU())
        units: list[nn.Module] = []
        channels = 24
        for width, count in zip(widths, blocks, strict=True):
            for index in range(count):
                # The stride-2 unit concatenates its input, so its branch only makes the missing channels.
                branch_channels = width - channels if index == 0 else width
                units.append(GroupedBottleneck(channels, branch_channels, 2 if index == 0 else 1, groups))
                channels = width
        self.units = nn.Sequential(*units)

    def forward_features(self, x: Tensor) -> Tensor:
        return global_avg_pool(self.units(self.stem(x)))


class SplitUnit(nn.Module):
    """ShuffleNet V2 basic unit: half the channels pass through, the other half go 1x1 - dw3x3 - 1x1."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.half = channels // 2
        branch = channels - self.half
        self.branch = nn.Sequential(
            conv_bn(branch, branch, 1), nn.ReLU(),
            conv_bn(branch, branch, 3, groups=branch),
            conv_bn(branch, branch, 1), nn.ReLU(),
        )

    def forward(self, x: Tensor) -> Tensor:
        passthrough, processed = x[:, : self.half], x[:, self.half :]
        return channel_shuffle(torch.cat([passthrough, self.branch(processed)], dim=1), 2)


class DownUnit(nn.Module):
    """ShuffleNet V2 stride-2 unit: two branches that each halve the resolution, concatenated."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        mid = out_channels // 2
        self.left = nn.Sequential(
            conv_bn(in_channels, in_channels, 3, 2, groups=in_channels),
            conv_bn(in_channels, mid, 1), nn.ReLU(),
        )
        self.right = nn.Sequential(
            conv_bn(in_channels, mid, 1), nn.ReLU(),
            conv_bn(mid, mid, 3, 2, groups=mid),
            conv_bn(mid, mid, 1), nn.ReLU(),
        )

    def forward(self, x: Tensor) -> Tensor:
        return channel_shuffle(torch.cat([self.left(x), self.right(x)], dim=1), 2)


class ShuffleNetV2(ClassifierModel):
    def __init__(self, num_classes: int, in_channels: int = 3, widths: tuple[int, ...] = (116, 232, 464),
                 blocks: tuple[int, ...] = (3, 7, 3), last_channels: int = 1024) -> None:
        super().__init__(num_classes, last_channels)
        self.stem = nn.Sequential(conv_bn(in_channels, 24, 3), nn.ReLU())
        units: list[nn.Module] = []
        channels = 24
        for width, count in zip(widths, blocks, strict=True):
            units.append(DownUnit(channels, width))
            units += [SplitUnit(width) for _ in range(count)]
            channels = width
        self.units = nn.Sequential(*units)
        self.head = nn.Sequential(conv_bn(channels, last_channels, 1), nn.ReLU())

    def forward_features(self, x: Tensor) -> Tensor:
        return global_avg_pool(self.head(self.units(self.stem(x))))


@register_model("shufflenetv1", family="shufflenet", default_lr=0.01, reference_params_m=0.95)
def build_shufflenetv1(num_classes: int, in_channels: int = 3) -> ClassifierModel:
    return ShuffleNetV1(num_classes, in_channels)


@register_model("shufflenetv2", family="shufflenet", default_lr=0.01, reference_params_m=1.36)
def build_shufflenetv2(num_classes: int, in_channels: int = 3) -> ClassifierModel:
    return ShuffleNetV2(num_classes, in_channels)

"""The feature API every model in the registry follows.

Distillers only ever call ``forward_features`` (the pooled penultimate feature h), ``classifier`` (the final
linear layer, ``h -> logits``) and read ``feature_dim`` / ``num_classes``; they never index into a model.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from cidpipe.errors import ConfigError


class ClassifierModel(nn.Module):
    """A classifier split into a feature extractor and one final linear layer.

    Subclasses call ``super().__init__(num_classes, feature_dim)`` first, build their layers and implement
    ``forward_features``. ``forward`` is always ``classifier(forward_features(x))`` so the logits a
    distiller computes from the feature are bit-identical to the model's own.
    """

    feature_dim: int
    num_classes: int
    classifier: nn.Linear

    def __init__(self, num_classes: int, feature_dim: int, classifier: nn.Linear | None = None) -> None:
        super().__init__()
        self.num_classes = int(num_classes)
        self.feature_dim = int(feature_dim)
        if classifier is None:
            classifier = nn.Linear(self.feature_dim, self.num_classes)
        self.classifier = classifier

    def forward_features(self, x: Tensor) -> Tensor:
        """Return the pooled penultimate feature, shape ``[B, feature_dim]``."""
        raise NotImplementedError(f"{type(self).__name__} must implement forward_features")

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.forward_features(x))


def global_avg_pool(x: Tensor) -> Tensor:
    """Global average pooling to ``[B, C]``; exports as one GlobalAveragePool node for any input size."""
    return F.adaptive_avg_pool2d(x, 1).flatten(1)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable and frozen parameters (buffers such as BN running stats are not counted)."""
    return sum(p.numel() for p in model.parameters())


def init_conv_bn(module: nn.Module, linear_std: float | None = None) -> None:
    """He (fan-out) init for convolutions, unit/zero batch norm, zero biases.

    ``linear_std`` draws linear weights from N(0, std) (the VGG/MobileNet recipe); ``None`` keeps PyTorch's
    default linear init (the ResNet recipe).
    """
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d):
            nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
        elif isinstance(layer, nn.BatchNorm2d | nn.GroupNorm):
            nn.init.ones_(layer.weight)
            nn.init.zeros_(layer.bias)
        elif isinstance(layer, nn.Linear) and linear_std is not None:
            nn.init.normal_(layer.weight, 0.0, linear_std)
            nn.init.zeros_(layer.bias)


def conv_bn(
    in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, groups: int = 1
) -> nn.Sequential:
    """Convolution (no bias, 'same' padding) followed by batch norm; no activation."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2,
                  groups=groups, bias=False),
        nn.BatchNorm2d(out_channels),
    )


def check_build_args(num_classes: int, in_channels: int) -> None:
    """Reject sizes no model can be built with, naming the bad value."""
    if int(num_classes) < 1:
        raise ConfigError(f"num_classes must be >= 1, got {num_classes}; use the dataset's class count")
    if int(in_channels) < 1:
        raise ConfigError(f"in_channels must be >= 1, got {in_channels}; use 1 for grayscale or 3 for RGB")


__all__ = ["ClassifierModel", "check_build_args", "conv_bn", "count_parameters", "global_avg_pool",
           "init_conv_bn"]

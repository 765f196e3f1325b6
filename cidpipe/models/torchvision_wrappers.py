"""torchvision classifiers for inputs larger than 32x32, behind the feature API.

Built with ``weights=None``: cidpipe never downloads weights. Each wrapper keeps the torchvision network
as ``backbone`` with its last linear layer replaced by Identity, and holds that layer as ``classifier``,
so ``forward`` is unchanged and ``forward_features`` is exactly the classifier's input.
"""

from __future__ import annotations

from torch import Tensor, nn

from cidpipe.models.base import ClassifierModel
from cidpipe.models.registry import register_model


class TorchvisionClassifier(ClassifierModel):
    def __init__(self, backbone: nn.Module, classifier: nn.Linear) -> None:
        super().__init__(classifier.out_features, classifier.in_features, classifier)
        self.backbone = backbone

    def forward_features(self, x: Tensor) -> Tensor:
        return self.backbone(x)


def _replace_first_conv(conv: nn.Conv2d, in_channels: int) -> nn.Conv2d:
    """Same stem convolution, fresh weights, ``in_channels`` inputs (1 for grayscale)."""
    if in_channels == conv.in_channels:
        return conv
    return nn.Conv2d(in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                     bias=conv.bias is not None)


@register_model("tv_resnet18", family="torchvision")
def build_tv_resnet18(num_classes: int, in_channels: int = 3) -> ClassifierModel:
    from torchvision.models import resnet18

    network = resnet18(weights=None, num_classes=num_classes)
    network.conv1 = _replace_first_conv(network.conv1, in_channels)
    classifier, network.fc = network.fc, nn.Identity()
    return TorchvisionClassifier(network, classifier)


def _mobilenet_v3(network: nn.Module, in_channels: int) -> ClassifierModel:
    # features[0] is Conv2dNormActivation; its [0] is the stem conv. The classifier is
    # Linear-Hardswish-Dropout-Linear; the feature API's h is the input of the last Linear.
    network.features[0][0] = _replace_first_conv(network.features[0][0], in_channels)
    classifier = network.classifier[-1]
    network.classifier[-1] = nn.Identity()
    return TorchvisionClassifier(network, classifier)


@register_model("tv_mobilenet_v3_small", family="torchvision")
def build_tv_mobilenet_v3_small(num_classes: int, in_channels: int = 3) -> ClassifierModel:
    from torchvision.models import mobilenet_v3_small

    return _mobilenet_v3(mobilenet_v3_small(weights=None, num_classes=num_classes), in_channels)


@register_model("tv_mobilenet_v3_large", family="torchvision")
def build_tv_mobilenet_v3_large(num_classes: int, in_channels: int = 3) -> ClassifierModel:
    from torchvision.models import mobilenet_v3_large

    return _mobilenet_v3(mobilenet_v3_large(weights=None, num_classes=num_classes), in_channels)

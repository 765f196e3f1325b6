"""Model registry and the feature API (``forward_features``, ``classifier``, ``feature_dim``,
``num_classes``).

Importing this package registers every model family. Models from timm, torchvision and a user's own builder
come in through sources.py (``build_from_config``); those libraries are imported only when one is used.
"""

from cidpipe.models import (  # noqa: F401  (imported for their registrations)
    cifar_resnet,
    mobilenetv2,
    resnet_imagenet_style,
    shufflenet,
    tiny,
    torchvision_wrappers,
    vgg,
    wrn,
)
from cidpipe.models.base import ClassifierModel, count_parameters
from cidpipe.models.input_adapter import InputAdapter
from cidpipe.models.registry import ModelInfo, build_model, list_models, model_info, register_model
from cidpipe.models.sources import build_architecture, build_from_config

__all__ = ["ClassifierModel", "InputAdapter", "ModelInfo", "build_architecture", "build_from_config",
           "build_model", "count_parameters", "list_models", "model_info", "register_model"]

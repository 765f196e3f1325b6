"""Model registry and the feature API (``forward_features``, ``classifier``, ``feature_dim``,
``num_classes``).

Importing this package registers every model family.
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
from cidpipe.models.registry import ModelInfo, build_model, list_models, model_info, register_model

__all__ = ["ClassifierModel", "ModelInfo", "build_model", "count_parameters", "list_models", "model_info",
           "register_model"]

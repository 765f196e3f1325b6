"""Every registered model follows the feature API, matches its published size and fails helpfully."""

from __future__ import annotations

import pytest
import torch

from cidpipe.errors import ConfigError, ModelError
from cidpipe.models import ClassifierModel, build_model, count_parameters, list_models, model_info
from cidpipe.models.registry import register_model

NUM_CLASSES = 100  # the published parameter counts are for CIFAR-100 heads
LARGE_MODEL_PARAMS = 5_000_000  # above this, forward with batch 1 to keep the file fast


def input_size(name: str) -> int:
    return 64 if model_info(name).family == "torchvision" else 32


@pytest.fixture(scope="module", params=list_models())
def built(request: pytest.FixtureRequest) -> tuple[str, ClassifierModel]:
    # Module scope: pytest groups the tests by model, so each model is built once and then released.
    torch.manual_seed(0)
    return request.param, build_model(request.param, NUM_CLASSES).eval()


def test_forward_follows_feature_api(built: tuple[str, ClassifierModel]) -> None:
    name, model = built
    assert isinstance(model, ClassifierModel)
    assert model.num_classes == NUM_CLASSES
    assert isinstance(model.classifier, torch.nn.Linear)
    assert model.classifier.in_features == model.feature_dim
    assert model.classifier.out_features == NUM_CLASSES
    batch = 1 if count_parameters(model) > LARGE_MODEL_PARAMS else 2
    size = input_size(name)
    x = torch.randn(batch, 3, size, size)
    with torch.no_grad():
        logits = model(x)
        features = model.forward_features(x)
        logits_from_features = model.classifier(features)
    assert logits.shape == (batch, NUM_CLASSES)
    assert features.shape == (batch, model.feature_dim)
    assert torch.isfinite(logits).all()
    assert torch.equal(logits, logits_from_features), f"{name}: forward != classifier(forward_features)"


def test_pooled_feature_is_after_the_last_relu(built: tuple[str, ClassifierModel]) -> None:
    """h is the input of the classifier after the final ReLU, so it is non-negative (except torchvision's
    MobileNetV3, whose last activation before the classifier is Hardswish)."""
    name, model = built
    if name.startswith("tv_mobilenet_v3"):
        pytest.skip("MobileNetV3's penultimate activation is Hardswish, which can be slightly negative")
    size = input_size(name)
    with torch.no_grad():
        features = model.forward_features(torch.randn(1, 3, size, size))
    assert (features >= 0).all()


REFERENCED = [name for name in list_models() if model_info(name).reference_params_m is not None]


@pytest.mark.parametrize("name", REFERENCED)
def test_parameter_count_matches_published(name: str) -> None:
    published = model_info(name).reference_params_m
    measured = count_parameters(build_model(name, NUM_CLASSES)) / 1e6
    # Published to 0.01 M: agree to those digits (half a unit), or within 1% for the large models.
    assert abs(measured - published) <= max(0.005, 0.01 * published), f"{name}: {measured:.4f} M"


def test_published_counts_cover_the_benchmark_models() -> None:
    expected = {"resnet8x4", "resnet32x4", "wrn_16_2", "wrn_40_2", "resnet56", "resnet20", "wrn_40_1",
                "vgg8", "vgg13", "mobilenetv2", "shufflenetv1", "shufflenetv2", "resnet50_cifar"}
    assert expected <= set(REFERENCED)


def test_default_learning_rates_follow_the_recipe() -> None:
    low_lr = {"mobilenetv2", "shufflenetv1", "shufflenetv2"}
    for name in list_models():
        assert model_info(name).default_lr == (0.01 if name in low_lr else 0.05), name


def _one_per_family() -> list[str]:
    first: dict[str, str] = {}
    for name in list_models():
        first.setdefault(model_info(name).family, name)
    return sorted(first.values())


@pytest.mark.parametrize("name", _one_per_family())
def test_grayscale_input_trains(name: str) -> None:
    """in_channels=1 builds, and one training step reaches every parameter (no dead layers)."""
    torch.manual_seed(0)
    model = build_model(name, 10, in_channels=1).train()
    size = input_size(name)
    logits = model(torch.randn(2, 1, size, size))
    assert logits.shape == (2, 10)
    torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1])).backward()
    without_grad = [n for n, p in model.named_parameters() if p.grad is None]
    assert not without_grad, f"{name}: parameters never used: {without_grad[:5]}"


def test_unknown_name_suggests_the_nearest() -> None:
    with pytest.raises(ModelError) as raised:
        build_model("resnet8x5", 10)
    message = str(raised.value)
    assert "'resnet8x4'" in message and "cidpipe models" in message and "\n" not in message
    with pytest.raises(ModelError, match="wrn_40_2"):
        model_info("wrn-40-2")
    with pytest.raises(ModelError, match="cidpipe models"):
        build_model("completely-different", 10)


def test_a_library_network_name_points_at_its_prefixed_spelling() -> None:
    """resnet18 is what a torchvision user writes: the nearest registry name (resnet8) would mislead."""
    with pytest.raises(ModelError) as raised:
        build_model("resnet18", 10)
    message = str(raised.value)
    assert "'torchvision:resnet18' or 'timm:resnet18'" in message and "'resnet18_cifar'" in message
    assert "resnet8'" not in message


def test_bad_sizes_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="num_classes"):
        build_model("resnet8", 0)
    with pytest.raises(ConfigError, match="in_channels"):
        build_model("resnet8", 10, in_channels=0)


def test_registering_a_taken_name_fails() -> None:
    with pytest.raises(ModelError, match="registered twice"):
        register_model("resnet8", family="cifar_resnet")(lambda num_classes, in_channels=3: None)
    assert model_info("resnet8").family == "cifar_resnet"

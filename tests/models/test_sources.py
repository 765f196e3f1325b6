"""timm / torchvision / python: model sources behind the feature API, and weights in the libraries' layout.

The native networks are built here with the libraries' own calls and saved with
``torch.save(net.state_dict())``, exactly what a user hands cidpipe; nothing is downloaded.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import timm
import torch
import torchvision
from torch import nn
from user_builders import PYTHON_BUILDER

from cidpipe.errors import ConfigError, ModelError
from cidpipe.modelio import load_state_strict, load_weights, save_weights
from cidpipe.models import build_model, model_info
from cidpipe.models.sources import build_architecture, build_from_config, check_weights_fit
from cidpipe.recipe_names import add_enums_to_schema, check_arch
from cidpipe.train_config import ModelConfig

CLASSES = 10
SIZE = 32


def _native(arch: str, num_classes: int = CLASSES, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    kind, name = arch.split(":")
    if kind == "timm":
        net = timm.create_model(name, num_classes=num_classes)
    else:
        net = torchvision.models.get_model(name, weights=None, num_classes=num_classes)
    # Non-trivial BN statistics, so a layer loaded into the wrong place would show in the logits.
    with torch.no_grad():
        net.train()(torch.randn(4, 3, SIZE, SIZE))
    return net.eval()


# MNASNet: its modules refuse a state dict without layout versions (_metadata), which renaming drops.
@pytest.fixture(
    scope="module", params=["timm:resnet10t", "torchvision:mobilenet_v3_small", "torchvision:mnasnet0_5"]
)
def native(request) -> tuple[str, nn.Module]:
    return request.param, _native(request.param)


def _save(state: dict, path: Path) -> Path:
    torch.save(state, path)
    return path


def _logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(x)


def test_native_weights_load_and_the_adapter_predicts_like_the_native_network(native, tmp_path):
    arch, net = native
    weights = _save(net.state_dict(), tmp_path / "native.pt")
    model, source = build_from_config(ModelConfig(arch=arch, weights=weights), CLASSES)
    x = torch.randn(3, 3, SIZE, SIZE)
    torch.testing.assert_close(_logits(model, x), _logits(net, x), rtol=0, atol=0)
    features = model.forward_features(x)
    assert features.shape == (3, model.feature_dim)
    assert model.num_classes == CLASSES and isinstance(model.classifier, nn.Linear)
    assert torch.equal(model.classifier(features), model(x))
    # Mapped both ways: the adapter's state dict goes back to exactly the native keys and tensors.
    back = model.own_to_native(model.state_dict())
    assert set(back) == set(net.state_dict())
    assert all(torch.equal(back[k], v) for k, v in net.state_dict().items())
    assert source["kind"] == arch.split(":")[0] and source["weights_layout"] == "native"
    assert source["head_reset"] is False and len(source["weights_sha256"]) == 64


def test_wrapper_prefixes_and_containers_are_unwrapped(native, tmp_path):
    arch, net = native
    wrapped = {"epoch": 3, "state_dict": {f"module.model.{k}": v for k, v in net.state_dict().items()}}
    model, source = build_from_config(
        ModelConfig(arch=arch, checkpoint=_save(wrapped, tmp_path / "w.pt")), CLASSES
    )
    assert source["stripped_prefix"] == "module.model."
    x = torch.randn(2, 3, SIZE, SIZE)
    torch.testing.assert_close(_logits(model, x), _logits(net, x), rtol=0, atol=0)


def test_another_class_count_loads_the_body_and_resets_the_head(tmp_path):
    net = _native("timm:resnet10t", num_classes=7)
    model, source = build_from_config(
        ModelConfig(arch="timm:resnet10t", weights=_save(net.state_dict(), tmp_path / "w7.pt")), CLASSES
    )
    assert source["head_reset"] is True and source["checkpoint_classes"] == 7
    assert model.classifier.out_features == CLASSES
    x = torch.randn(2, 3, SIZE, SIZE)
    with torch.no_grad():
        native_features = net.forward_head(net.forward_features(x), pre_logits=True)
        torch.testing.assert_close(model.eval().forward_features(x), native_features, rtol=0, atol=0)


def test_a_mismatched_file_names_the_keys_and_the_likely_cause(tmp_path):
    other = _save(_native("torchvision:mobilenet_v3_small").state_dict(), tmp_path / "mnv3.pt")
    with pytest.raises(ModelError) as err:
        build_from_config(ModelConfig(arch="timm:resnet10t", weights=other), CLASSES)
    message = str(err.value)
    assert "first missing 'conv1.0.weight'" in message and "first unexpected 'features.0.0.weight'" in message
    assert "another architecture" in message and "\n" not in message


def test_a_file_with_extra_keys_names_an_extra_key_not_one_that_is_present(tmp_path):
    native = _native("torchvision:mobilenet_v3_small")
    state = {**native.state_dict(), "ema.decay": torch.tensor(0.999)}
    with pytest.raises(ModelError) as err:
        weights = _save(state, tmp_path / "x.pt")
        build_from_config(ModelConfig(arch="torchvision:mobilenet_v3_small", weights=weights), CLASSES)
    message = str(err.value)
    assert "0 expected keys missing and 1 unexpected; first unexpected 'ema.decay'" in message, message
    assert "first missing" not in message


def test_the_plan_checks_the_fit_from_the_file_index_alone(native, tmp_path):
    """What the stage would refuse, found from lazily read weights (meta tensors, no values) and a model
    built on the meta device: the same message; a wrapped file or another class count still passes."""
    arch, net = native
    wrapped = {"state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}}
    wrapped = _save(wrapped, tmp_path / "w.pt")
    state = load_weights(wrapped, lazy=True)
    assert {v.device.type for v in state.values()} == {"meta"}
    check_weights_fit(ModelConfig(arch=arch), 3, state, "w.pt")
    check_weights_fit(ModelConfig(arch=arch), 1, state, "w.pt")  # grey images: the stem is adapted
    other_head = _save(_native(arch, num_classes=3).state_dict(), tmp_path / "three.pt")
    check_weights_fit(ModelConfig(arch=arch), 3, load_weights(other_head, lazy=True), "three.pt")

    head = build_architecture(arch, CLASSES).head_name + "."
    headless = {k: v for k, v in state.items() if not k.startswith("module." + head)}
    with pytest.raises(ModelError, match=f"2 expected keys missing and 0 unexpected; first missing '{head}"):
        check_weights_fit(ModelConfig(arch=arch), 3, headless, "w.pt")  # any class count, but a classifier

    other = "torchvision:resnet18" if arch.startswith("timm") else "timm:resnet10t"
    at_plan = pytest.raises(ModelError, match=f"^w.pt does not match a {other} model: ")
    with at_plan as planned:
        check_weights_fit(ModelConfig(arch=other), 3, state, "w.pt")
    with pytest.raises(ModelError) as built:
        build_from_config(ModelConfig(arch=other, weights=wrapped), CLASSES)
    # The same diagnosis, but for the classifier: unknown at plan time, left out of the class count and
    # of the key counts.
    def diagnosis(err) -> str:
        text = str(err.value).replace(f" ({CLASSES} classes)", "").replace(str(wrapped), "w.pt")
        return re.sub(r"\d+ expected keys missing and \d+ unexpected", "N missing and M unexpected", text)

    assert diagnosis(built) == diagnosis(planned)


def test_an_unknown_prefix_is_named(tmp_path):
    net = _native("timm:resnet10t")
    prefixed = _save({f"backbone.{k}": v for k, v in net.state_dict().items()}, tmp_path / "bb.pt")
    with pytest.raises(ModelError, match="wrapper prefix: the file's keys start with 'backbone.'"):
        build_from_config(ModelConfig(arch="timm:resnet10t", weights=prefixed), CLASSES)


def test_a_whole_pickled_model_is_refused(tmp_path):
    path = tmp_path / "whole.pt"
    torch.save(_native("torchvision:mobilenet_v3_small"), path)
    with pytest.raises(ModelError, match=r"MobileNetV3.*save model.state_dict\(\) instead"):
        build_from_config(ModelConfig(arch="torchvision:mobilenet_v3_small", weights=path), CLASSES)


def test_grayscale_input_rebuilds_the_stem_and_adapts_rgb_weights(tmp_path):
    net = _native("torchvision:resnet18")
    model, source = build_from_config(
        ModelConfig(arch="torchvision:resnet18", weights=_save(net.state_dict(), tmp_path / "r18.pt")),
        CLASSES,
        in_channels=1,
    )
    assert source["adapted_input_channels"] == ["body.conv1.weight"]
    grey = torch.randn(2, 1, SIZE, SIZE)
    # Summed RGB filters on a grey image == the RGB network on that image repeated to R=G=B.
    torch.testing.assert_close(
        _logits(model, grey), _logits(net, grey.repeat(1, 3, 1, 1)), rtol=1e-4, atol=1e-4
    )
    timm_model, _ = build_from_config(ModelConfig(arch="timm:resnet10t"), CLASSES, in_channels=1)
    assert _logits(timm_model, grey).shape == (2, CLASSES)


def test_a_python_builder_is_called_with_its_kwargs_and_adapted(tmp_path, monkeypatch):
    (tmp_path / "my_nets.py").write_text(PYTHON_BUILDER)
    monkeypatch.syspath_prepend(str(tmp_path))
    model, source = build_from_config(ModelConfig(arch="python:my_nets:build", kwargs={"width": 6}), CLASSES)
    assert model.feature_dim == 6 and model.num_classes == CLASSES and source["kind"] == "python"
    x = torch.randn(2, 3, SIZE, SIZE)
    assert torch.equal(model.classifier(model.forward_features(x)), model(x))
    with pytest.raises(ModelError, match="takes no in_channels argument"):
        build_from_config(ModelConfig(arch="python:my_nets:build"), CLASSES, in_channels=1)
    with pytest.raises(ModelError, match="has no nope"):
        build_from_config(ModelConfig(arch="python:my_nets:nope"), CLASSES)


def test_names_are_checked_against_the_libraries_with_a_close_match():
    check_arch("timm:mobilenetv3_small_050", "teacher.model.arch")
    check_arch("torchvision:resnet18", "teacher.model.arch")
    check_arch("python:not_imported_at_plan_time:build", "student.model.arch")
    with pytest.raises(ModelError, match=r"student.model.arch: .*did you mean 'timm:mobilenetv3_small_050'"):
        check_arch("timm:mobilenetv3_smal_050", "student.model.arch")
    with pytest.raises(ModelError, match="did you mean 'torchvision:resnet18'"):
        check_arch("torchvision:resnet19", "teacher.model.arch")
    with pytest.raises(ModelError, match="python:<module>:<function>"):
        check_arch("python:no_function", "teacher.model.arch")
    info = model_info("timm:mobilenetv3_small_050")
    assert info.family == "timm" and info.default_lr == 0.01
    assert build_model("timm:mobilenetv3_small_050", CLASSES).num_classes == CLASSES


def test_model_config_keeps_checkpoint_as_the_old_name_of_weights():
    old = ModelConfig.model_validate({"arch": "resnet8", "checkpoint": "w.pt"})
    assert old.weights == old.checkpoint == Path("w.pt")
    # Unchanged dump for a recipe without the new keys: stage ids of finished runs stay the same.
    assert old.model_dump(mode="json") == {"arch": "resnet8", "checkpoint": "w.pt"}
    new = ModelConfig.model_validate(
        {"arch": "timm:resnet10t", "weights": "w.pt", "kwargs": {"drop_rate": 0.1}}
    )
    assert new.checkpoint == Path("w.pt") and ModelConfig.model_validate(new.model_dump(mode="json")) == new
    for bad, message in [
        ({"arch": "resnet8", "pretrained": True}, "needs a timm: or torchvision:"),
        ({"arch": "timm:resnet10t", "kwargs": {"num_classes": 3}}, "set by cidpipe"),
        ({"arch": "timm:resnet10t", "weights": "a", "checkpoint": "b"}, "disagree"),
    ]:
        with pytest.raises(ConfigError, match=message):
            ModelConfig.model_validate(bad)


def test_the_schema_accepts_prefixed_archs_as_patterns():
    import re

    schema = add_enums_to_schema({"$defs": {"ModelConfig": {"properties": {"arch": {"type": "string"}}}}})
    choices = schema["$defs"]["ModelConfig"]["properties"]["arch"]["anyOf"]
    assert "resnet8" in choices[0]["enum"]
    patterns = [re.compile(c["pattern"]) for c in choices[1:]]
    for arch in ("timm:mobilenetv3_small_050.lamb_in1k", "torchvision:resnet18", "python:pkg.mod:build"):
        assert any(p.match(arch) for p in patterns), arch


def test_a_distillation_head_is_refused_unless_switched_off():
    with pytest.raises(ModelError, match=r"2 classifier heads .*distillation: false"):
        build_from_config(ModelConfig(arch="timm:efficientformerv2_s0"), CLASSES)
    model, _ = build_from_config(
        ModelConfig(arch="timm:efficientformerv2_s0", kwargs={"distillation": False, "img_size": SIZE}),
        CLASSES,
    )
    assert _logits(model, torch.randn(2, 3, SIZE, SIZE)).shape == (2, CLASSES)


def test_a_saved_adapter_reloads_from_safetensors_without_layout_versions(tmp_path):
    model, _ = build_from_config(ModelConfig(arch="torchvision:mnasnet0_5"), CLASSES)
    save_weights(model, tmp_path / "model.safetensors")
    again = build_architecture("torchvision:mnasnet0_5", CLASSES)
    load_state_strict(again, load_weights(tmp_path / "model.safetensors"), "model.safetensors", "mnasnet")
    x = torch.randn(2, 3, SIZE, SIZE)
    torch.testing.assert_close(_logits(again, x), _logits(model, x), rtol=0, atol=0)


def test_python_sources_are_opt_in_and_never_the_standard_library(monkeypatch):
    """A hostile recipe or manifest must not be able to call e.g. shutil.rmtree through a python: arch."""
    monkeypatch.delenv("CIDPIPE_ALLOW_PYTHON_MODELS")
    with pytest.raises(ModelError, match="CIDPIPE_ALLOW_PYTHON_MODELS=1"):
        build_from_config(ModelConfig(arch="python:my_nets:build"), CLASSES)
    monkeypatch.setenv("CIDPIPE_ALLOW_PYTHON_MODELS", "1")
    with pytest.raises(ModelError, match="shutil is not a model builder"):
        build_from_config(ModelConfig(arch="python:shutil:rmtree", kwargs={"path": "/tmp/x"}), CLASSES)


def test_the_models_listing_names_the_sources_of_a_users_own_model():
    """`cidpipe models` lists the demo registry; the user's timm / torchvision / python model would be
    invisible there, so the listing names the prefixes, and its examples are real architecture names."""
    from cidpipe.cli.verb_models import SOURCES_HINT
    from cidpipe.models.sources import check_arch_name
    from tests.conftest import run_cli

    out = run_cli("models")
    assert out.returncode == 0 and "timm:<name>" in out.stdout and "python:<module>:<function>" in out.stdout
    examples = re.findall(r"e\.g\. ((?:timm|torchvision):\w+)", SOURCES_HINT)
    assert examples == ["timm:resnet50", "torchvision:mobilenet_v3_large"]
    for example in examples:
        check_arch_name(example)  # raises for a name the library does not have

"""Where a model comes from: the CIFAR registry, ``timm:<name>``, ``torchvision:<name>`` or
``python:<module>:<function>``, all behind the feature API (adapters.py).

``build_from_config`` is what the stages call: the model (weights loaded) and a JSON-able ``source`` record
for the manifest. ``build_architecture`` rebuilds the same network, never loading or downloading weights,
from what the manifest spec keeps (``arch`` + ``kwargs``), so any verb can reopen a run in a fresh process.
The libraries are imported only when a name of theirs is used.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import nn

from cidpipe.errors import ConfigError, MissingDependency, ModelError
from cidpipe.models.adapters import adapt_last_linear, adapt_module, adapt_timm, replace_stem_conv
from cidpipe.models.base import ClassifierModel, check_build_args
from cidpipe.models.pretrained_cache import not_cached, require_fetchable, timm_cached, torch_hub_file
from cidpipe.models.registry import ModelInfo

if TYPE_CHECKING:
    from cidpipe.models.weights import LoadReport

PREFIXED_SOURCES = ("timm", "torchvision", "python")
# Third-party models have no tuned CIFAR learning rate; 0.01 is the registry's value for the
# MobileNet/ShuffleNet family, the closest kin of the edge models these sources add.
DEFAULT_SOURCE_LR = 0.01
_DOTTED = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


@dataclass(frozen=True)
class ArchName:
    kind: str  # "registry", "timm", "torchvision" or "python"
    name: str  # the part after the prefix ("mobilenetv3_small_050", "mypkg.nets:build")
    full: str


def parse_arch(arch: str) -> ArchName:
    kind, sep, name = arch.partition(":")
    if not sep:
        return ArchName("registry", arch, arch)
    if kind not in PREFIXED_SOURCES:
        raise ModelError(
            f"unknown model source {kind!r} in {arch!r}; use one of "
            f"{', '.join(p + ':' for p in PREFIXED_SOURCES)} or a registry name"
        )
    if kind == "python":
        module, sep2, function = name.partition(":")
        if not (sep2 and _DOTTED.match(module) and _DOTTED.match(function)):
            raise ModelError(f"{arch!r} is not python:<module>:<function> (e.g. python:mypkg.nets:build_net)")
    elif not name:
        raise ModelError(f"{arch!r} names no model; write {kind}:<name>")
    return ArchName(kind, name, arch)


def _import_library(kind: str):
    try:
        return importlib.import_module("timm" if kind == "timm" else "torchvision.models")
    except ImportError:
        package = "timm" if kind == "timm" else "torchvision"
        raise MissingDependency(f"{kind}: models need {package}; pip install {package}") from None


def known_names(kind: str) -> list[str]:
    """All model names a prefixed source offers (torchvision: classification builders only)."""
    library = _import_library(kind)
    if kind == "timm":
        return library.list_models()
    return library.list_models(module=library)


def library_hint(name: str) -> str:
    """For an unprefixed name that torchvision or timm offers ("resnet18": a user's ImageNet network, not a
    misspelt CIFAR "resnet8"), the prefixed spelling to write; "" otherwise."""
    found = []
    for kind in ("torchvision", "timm"):
        try:
            if name in known_names(kind):
                found.append(f"'{kind}:{name}'")
        except MissingDependency:
            continue
    if not found:
        return ""
    from cidpipe.models.registry import list_models

    registry = (f"the registry's CIFAR-size network is '{name}_cifar'" if f"{name}_cifar" in list_models()
                else "the registry holds CIFAR-size networks only")
    return (f"{registry}; for the library network write {' or '.join(found)} (with model.weights for your "
            "own weights file)")


def check_arch_name(arch: str) -> ArchName:
    """ModelError for an unknown name, with the closest known one. ``python:`` is checked syntactically
    only: importing a user's module at plan time would run its code before anything else is checked."""
    parsed = parse_arch(arch)
    if parsed.kind in ("timm", "torchvision"):
        library = _import_library(parsed.kind)
        exists = (
            library.is_model(parsed.name)
            if parsed.kind == "timm"
            else parsed.name in known_names("torchvision")
        )
        if not exists:
            close = difflib.get_close_matches(parsed.name, known_names(parsed.kind), n=1)
            hint = f"did you mean '{parsed.kind}:{close[0]}'? " if close else ""
            raise ModelError(
                f"unknown {parsed.kind} model {parsed.name!r}; {hint}"
                f"see {'timm' if parsed.kind == 'timm' else 'torchvision.models'}.list_models() for the names"
            )
    return parsed


def source_model_info(arch: str) -> ModelInfo:
    """What a recipe needs to know about a prefixed arch without building it."""
    parsed = check_arch_name(arch)
    return ModelInfo(arch, parsed.kind, DEFAULT_SOURCE_LR, None)


# --------------------------------------------------------------------------- building
def build_architecture(
    arch: str, num_classes: int, in_channels: int = 3, kwargs: dict[str, Any] | None = None
) -> ClassifierModel:
    """The network with fresh weights (never loaded, never downloaded), behind the feature API."""
    model, _ = _build(check_arch_name(arch), int(num_classes), int(in_channels), dict(kwargs or {}), False)
    return model


def build_from_config(cfg: Any, num_classes: int, in_channels: int = 3) -> tuple[ClassifierModel, dict]:
    """The model a ``ModelConfig`` describes, weights loaded (``weights`` / ``pretrained``), and the JSON-able
    source record for the manifest."""
    from cidpipe.manifest import sha256_file
    from cidpipe.modelio import load_weights
    from cidpipe.models.weights import load_into

    parsed = check_arch_name(cfg.arch)
    model, source = _build(parsed, int(num_classes), int(in_channels), dict(cfg.kwargs), bool(cfg.pretrained))
    weights = getattr(cfg, "weights", None) or getattr(cfg, "checkpoint", None)
    if weights is not None:
        path = Path(weights)
        report = load_into(model, load_weights(path), str(path), cfg.arch)
        source.update(
            weights=str(path),
            weights_sha256=sha256_file(path),
            weights_layout=report.layout,
            stripped_prefix=report.stripped_prefix,
            head_reset=report.head_reset,
            checkpoint_classes=report.checkpoint_classes,
            adapted_input_channels=report.adapted_input_channels,
        )
    return model, source


def check_weights_fit(
    cfg: Any, in_channels: int, state: dict, source: str, num_classes: int | None = None
) -> LoadReport | None:
    """Plan time: ``state`` (meta tensors from ``load_weights(lazy=True)`` will do) fits ``cfg.arch``'s keys
    and shapes. With ``num_classes`` (the data's, when it is known without reading the data) the report
    says whether the head will be reset; without, the classifier is left out. The model is built on the
    meta device, without memory or initialisation; an architecture that cannot be built there is checked
    when its stage builds it (None)."""
    import torch

    from cidpipe.errors import CidpipeError
    from cidpipe.models.weights import fit_state

    parsed = check_arch_name(cfg.arch)
    try:
        with torch.device("meta"):
            # Without the data's class count any will do: the head is not compared.
            model, _ = _build(parsed, num_classes or 10, int(in_channels), dict(cfg.kwargs), False)
    except CidpipeError:
        raise
    except Exception:  # noqa: BLE001 - a model whose construction needs real tensors: checked later
        return None
    return fit_state(model, state, source, cfg.arch, ignore_head=num_classes is None)[1]


def _build(parsed: ArchName, num_classes: int, in_channels: int, kwargs: dict, pretrained: bool):
    check_build_args(num_classes, in_channels)
    source: dict[str, Any] = {
        "kind": parsed.kind,
        "name": parsed.name,
        "arch": parsed.full,
        "kwargs": kwargs,
        "pretrained": pretrained,
        "head_reset": False,
        "checkpoint_classes": None,
    }
    if parsed.kind == "registry":
        from cidpipe.models.registry import build_model

        if kwargs:
            raise ConfigError(
                f"model.kwargs is for timm:/torchvision:/python: archs; {parsed.full} takes none"
            )
        return build_model(parsed.name, num_classes, in_channels=in_channels), source
    builder = {"timm": _build_timm, "torchvision": _build_torchvision, "python": _build_python}[parsed.kind]
    return builder(parsed, num_classes, in_channels, kwargs, pretrained, source), source


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0][:200]}" if text else type(err).__name__


def check_pretrained_fetchable(arch: str) -> None:
    """ModelError when ``arch``'s pretrained weights are neither cached nor downloadable now (the plan's
    check: no model is built)."""
    parsed = parse_arch(arch)
    if parsed.kind == "timm":
        _timm_pretrained_cfg(parsed)
    elif parsed.kind == "torchvision":
        _torchvision_pretrained_weights(parsed)


def _timm_pretrained_cfg(parsed):
    """timm's pretrained config of ``parsed``, its file cached or its host reachable (else ModelError)."""
    cfg = _import_library("timm").models.get_pretrained_cfg(parsed.name)
    if cfg is None or not (cfg.hf_hub_id or cfg.url or cfg.file):
        raise ModelError(f"timm publishes no pretrained weights for {parsed.full}; pass model.weights")
    cached, where, url = timm_cached(cfg)
    if cfg.hf_hub_id or cfg.url:
        require_fetchable(parsed.full, cached=cached, where=where, url=url)
    return cfg


def _torchvision_pretrained_weights(parsed):
    """torchvision's DEFAULT weights enum of ``parsed``, cached or its host reachable (else ModelError)."""
    try:
        weights = _import_library("torchvision").get_model_weights(parsed.name).DEFAULT
    except (AttributeError, KeyError, ValueError):
        raise ModelError(
            f"torchvision publishes no pretrained weights for {parsed.full}; pass model.weights"
        ) from None
    hub_file = torch_hub_file(weights.url)
    require_fetchable(parsed.full, cached=hub_file.is_file(), where=str(hub_file.parent), url=weights.url)
    return weights


def _build_timm(parsed, num_classes, in_channels, kwargs, pretrained, source) -> ClassifierModel:
    timm = _import_library("timm")
    if pretrained:
        cfg = _timm_pretrained_cfg(parsed)
        source.update(
            pretrained_tag=cfg.hf_hub_id or cfg.url,
            checkpoint_classes=cfg.num_classes,
            head_reset=bool(cfg.num_classes) and cfg.num_classes != num_classes,
        )
    try:
        network = timm.create_model(
            parsed.name, pretrained=pretrained, num_classes=num_classes, in_chans=in_channels, **kwargs
        )
    except TypeError as err:
        raise ModelError(f"{parsed.full} does not take model.kwargs {kwargs}: {_first_line(err)}") from err
    except Exception as err:  # noqa: BLE001 - a download or cache failure, or a bad kwarg value
        if pretrained:
            raise not_cached(parsed.full, "HF_HOME / TORCH_HOME", _first_line(err)) from err
        raise ModelError(f"timm could not build {parsed.full}: {_first_line(err)}") from err
    source["version"] = {"timm": timm.__version__}
    return adapt_timm(network, parsed.full)


def _build_torchvision(parsed, num_classes, in_channels, kwargs, pretrained, source) -> ClassifierModel:
    models = _import_library("torchvision")
    weights = None
    native_classes = num_classes
    if pretrained:
        weights = _torchvision_pretrained_weights(parsed)
        native_classes = len(weights.meta["categories"])
        source.update(
            pretrained_tag=str(weights),
            checkpoint_classes=native_classes,
            head_reset=native_classes != num_classes,
        )
    try:
        # With weights the builder insists on the weights' own class count; the head is reset below.
        extra = {} if pretrained else {"num_classes": num_classes}
        network = models.get_model(parsed.name, weights=weights, **extra, **kwargs)
    except TypeError as err:
        raise ModelError(f"{parsed.full} does not take model.kwargs {kwargs}: {_first_line(err)}") from err
    except Exception as err:  # noqa: BLE001 - a download or cache failure, or a bad kwarg value
        if pretrained:
            raise not_cached(parsed.full, str(torch_hub_file(weights.url).parent), _first_line(err)) from err
        raise ModelError(f"torchvision could not build {parsed.full}: {_first_line(err)}") from err
    if in_channels != 3:
        source["adapted_input_channels"] = [
            replace_stem_conv(network, in_channels, parsed.full, keep_weights=pretrained)
        ]
    model = adapt_last_linear(network, native_classes, parsed.full)
    if native_classes != num_classes:
        model.reset_classifier(num_classes)
    import torchvision

    source["version"] = {"torchvision": torchvision.__version__}
    return model


ALLOW_PYTHON_ENV = "CIDPIPE_ALLOW_PYTHON_MODELS"


def check_python_allowed(arch: str, module_name: str) -> None:
    """``python:`` names code to import and call. A recipe or a run directory may come from someone else, so
    running it is opt-in (the environment variable), and never the standard library (``python:shutil:...``
    is an attack, not a model)."""
    if os.environ.get(ALLOW_PYTHON_ENV) != "1":
        raise ModelError(
            f"{arch} imports and runs Python code named by the recipe (or by a run directory's manifest); "
            f"set {ALLOW_PYTHON_ENV}=1 to allow it, only for recipes and runs you trust"
        )
    top = module_name.split(".")[0]
    if top in sys.stdlib_module_names or top in ("builtins", "torch", "cidpipe"):
        raise ModelError(f"{arch}: {top} is not a model builder module; name your own module")


def _build_python(parsed, num_classes, in_channels, kwargs, pretrained, source) -> ClassifierModel:
    module_name, _, function_name = parsed.name.partition(":")
    check_python_allowed(parsed.full, module_name)
    try:
        target: Any = importlib.import_module(module_name)
        for part in function_name.split("."):
            target = getattr(target, part)
    except ImportError as err:
        raise ModelError(
            f"{parsed.full}: cannot import {module_name} ({_first_line(err)}); "
            "put it on PYTHONPATH or install it"
        ) from err
    except AttributeError:
        raise ModelError(f"{parsed.full}: {module_name} has no {function_name}") from None
    call_kwargs = dict(kwargs, num_classes=num_classes)
    if _accepts(target, "in_channels"):
        call_kwargs["in_channels"] = in_channels
    elif in_channels != 3:
        raise ModelError(
            f"{parsed.full} takes no in_channels argument but the data has {in_channels} "
            "channels; add an in_channels parameter to it"
        )
    try:
        network = target(**call_kwargs)
    except Exception as err:  # noqa: BLE001 - the user's code; the chained cause keeps its traceback
        raise ModelError(f"{parsed.full}(num_classes={num_classes}, ...) raised {_first_line(err)}") from err
    if not isinstance(network, nn.Module):
        raise ModelError(f"{parsed.full} returned a {type(network).__name__}, not a torch.nn.Module")
    model = adapt_module(network, num_classes, parsed.full)
    built_classes = int(getattr(model, "num_classes", model.classifier.out_features))
    if built_classes != num_classes:
        raise ModelError(f"{parsed.full} built {built_classes} classes, asked for {num_classes}")
    return model


def _accepts(function: Any, name: str) -> bool:
    try:
        return name in inspect.signature(function).parameters
    except (TypeError, ValueError):
        return False


__all__ = [
    "DEFAULT_SOURCE_LR",
    "PREFIXED_SOURCES",
    "ArchName",
    "build_architecture",
    "build_from_config",
    "check_arch_name",
    "known_names",
    "parse_arch",
    "source_model_info",
]

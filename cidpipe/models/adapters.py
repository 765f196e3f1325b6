"""Third-party classifiers (timm, torchvision, a user's builder) behind the feature API.

One adapter shape for every source: ``body`` is the library's own network with its final linear layer
replaced by Identity, and that layer is held as ``classifier``. Nothing is copied or re-wrapped per model,
so the adapter's state dict is the native one with a fixed renaming (``native_to_own`` /
``own_to_native``): the head's keys move under ``classifier.``, everything else under ``body.``.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import Tensor, nn

from cidpipe.errors import ModelError
from cidpipe.models.base import ClassifierModel


class NativeHeadAdapter(ClassifierModel):
    """A native network split at its final ``nn.Linear`` (named ``head_name`` inside the network)."""

    def __init__(self, body: nn.Module, classifier: nn.Linear, head_name: str, arch: str) -> None:
        super().__init__(classifier.out_features, classifier.in_features, classifier)
        self.body = body
        self.head_name = head_name
        self.arch = arch

    def reset_classifier(self, num_classes: int) -> None:
        """A freshly initialised head for ``num_classes`` (PyTorch's default Linear init)."""
        old = self.classifier
        self.classifier = nn.Linear(
            self.feature_dim,
            int(num_classes),
            bias=old.bias is not None,
            device=old.weight.device,
            dtype=old.weight.dtype,
        )
        self.num_classes = int(num_classes)

    # ---------------------------------------------------------------- state-dict layouts
    def native_to_own(self, state: dict[str, Tensor]) -> dict[str, Tensor]:
        head = self.head_name + "."
        return {
            ("classifier." + key[len(head) :]) if key.startswith(head) else "body." + key: value
            for key, value in state.items()
        }

    def own_to_native(self, state: dict[str, Tensor]) -> dict[str, Tensor]:
        """The inverse renaming: this adapter's state dict in the library's layout (for export back)."""
        native: dict[str, Tensor] = OrderedDict()
        for key, value in state.items():
            if key.startswith("classifier."):
                native[self.head_name + "." + key[len("classifier.") :]] = value
            elif key.startswith("body."):
                native[key[len("body.") :]] = value
        metadata = getattr(state, "_metadata", None)
        if metadata is not None:  # per-module layout versions (see weights.with_layout_versions)
            native._metadata = {
                _native_prefix(k, self.head_name): v
                for k, v in metadata.items()
                if k == "body" or k.startswith(("body.", "classifier"))
            }
        return native

    def native_head_keys(self) -> list[str]:
        return [f"{self.head_name}.{name}" for name, _ in self.classifier.named_parameters()]


def _native_prefix(own_prefix: str, head_name: str) -> str:
    if own_prefix.startswith("classifier"):
        return head_name + own_prefix[len("classifier") :]
    return own_prefix[len("body.") :] if own_prefix.startswith("body.") else ""


class TimmAdapter(NativeHeadAdapter):
    """timm models: h is ``forward_head(forward_features(x), pre_logits=True)``.

    The body's head is Identity, and timm's pre_logits path returns before it, so h is exactly the
    classifier's input. Head dropout (``drop_rate``) sits between h and the classifier in timm and is
    skipped here; its default is 0, and in eval mode (export, parity) it is the identity anyway.
    """

    def forward_features(self, x: Tensor) -> Tensor:
        return self.body.forward_head(self.body.forward_features(x), pre_logits=True)


class LastLinearAdapter(NativeHeadAdapter):
    """Any network whose forward ends in its last ``nn.Linear`` (torchvision classifiers, most user models):
    with that layer replaced by Identity the network's own forward returns h."""

    def forward_features(self, x: Tensor) -> Tensor:
        return self.body(x)


def _qualified_name(network: nn.Module, target: nn.Module) -> str:
    for name, module in network.named_modules():
        if module is target:
            return name
    raise ModelError(f"{type(network).__name__}'s classifier is not one of its submodules")


def _replace_submodule(network: nn.Module, name: str, replacement: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = network.get_submodule(parent_name) if parent_name else network
    setattr(parent, child, replacement)


def adapt_timm(network: nn.Module, arch: str) -> TimmAdapter:
    head = network.get_classifier()
    if isinstance(head, tuple):  # (head, distillation head); the latter is None when switched off
        heads = [h for h in head if h is not None]
        head = heads[0] if len(heads) == 1 else tuple(heads)
    if isinstance(head, tuple):
        raise ModelError(
            f"{arch} has {len(head)} classifier heads (a distillation head); the feature API needs one, "
            "try model.kwargs: {distillation: false} where the model takes it, or another model"
        )
    if not isinstance(head, nn.Linear):
        raise ModelError(
            f"{arch} ends in a {type(head).__name__}, not an nn.Linear; the feature API (CID, FitNet) needs "
            "a final linear classifier, pick another model"
        )
    name = _qualified_name(network, head)
    _replace_submodule(network, name, nn.Identity())
    return TimmAdapter(network, head, name, arch)


def final_linear_name(network: nn.Module, num_classes: int, arch: str) -> str:
    """The last nn.Linear (in registration order) with ``num_classes`` outputs: the classifier."""
    names = [
        n for n, m in network.named_modules() if isinstance(m, nn.Linear) and m.out_features == num_classes
    ]
    if not names:
        raise ModelError(
            f"{arch} has no nn.Linear with {num_classes} outputs to use as its classifier (it may end in a "
            "convolution); the feature API needs a final linear layer, pick another model"
        )
    return names[-1]


def adapt_last_linear(network: nn.Module, num_classes: int, arch: str) -> LastLinearAdapter:
    name = final_linear_name(network, num_classes, arch)
    head = network.get_submodule(name)
    _replace_submodule(network, name, nn.Identity())
    return LastLinearAdapter(network, head, name, arch)


def adapt_module(network: nn.Module, num_classes: int, arch: str) -> ClassifierModel:
    """Pick the adapter by what the module can do, not by where it came from."""
    has_feature_api = (
        hasattr(network, "forward_features")
        and hasattr(network, "feature_dim")
        and isinstance(getattr(network, "classifier", None), nn.Linear)
    )
    if isinstance(network, ClassifierModel) or has_feature_api:
        return network  # already speaks the feature API
    if all(hasattr(network, a) for a in ("forward_head", "forward_features", "get_classifier")):
        return adapt_timm(network, arch)
    return adapt_last_linear(network, num_classes, arch)


def adapt_input_channels(weight: Tensor, in_channels: int) -> Tensor:
    """RGB stem weights for ``in_channels`` inputs: summed for one channel (a grey image seen as R=G=B gives
    the same response), otherwise the RGB filters repeated and scaled so the response keeps its size."""
    if in_channels == 1:
        return weight.sum(dim=1, keepdim=True)
    repeats = -(-in_channels // weight.shape[1])
    return weight.repeat(1, repeats, 1, 1)[:, :in_channels] * (weight.shape[1] / in_channels)


def replace_stem_conv(network: nn.Module, in_channels: int, arch: str, *, keep_weights: bool = False) -> str:
    """Rebuild the one RGB input convolution for ``in_channels`` inputs; returns its name.

    The new convolution is freshly initialised, or with ``keep_weights`` (pretrained networks) carries the
    RGB filters adapted by :func:`adapt_input_channels`.

    Generic rule: the stem is the only ungrouped nn.Conv2d with 3 input channels. When there is not
    exactly one, the network is refused instead of guessing which layer sees the image.
    """
    stems = [
        n
        for n, m in network.named_modules()
        if isinstance(m, nn.Conv2d) and m.in_channels == 3 and m.groups == 1
    ]
    if len(stems) != 1:
        raise ModelError(
            f"{arch} expects 3 input channels and its input convolution cannot be found unambiguously "
            f"({len(stems)} candidates); convert the data to RGB"
        )
    old = network.get_submodule(stems[0])
    new = nn.Conv2d(
        in_channels,
        old.out_channels,
        old.kernel_size,
        old.stride,
        old.padding,
        old.dilation,
        bias=old.bias is not None,
        padding_mode=old.padding_mode,
    )
    if keep_weights:
        with torch.no_grad():
            new.weight.copy_(adapt_input_channels(old.weight, in_channels))
            if old.bias is not None:
                new.bias.copy_(old.bias)
    _replace_submodule(network, stems[0], new)
    return stems[0]


__all__ = [
    "LastLinearAdapter",
    "NativeHeadAdapter",
    "TimmAdapter",
    "adapt_last_linear",
    "adapt_module",
    "adapt_input_channels",
    "adapt_timm",
    "final_linear_name",
    "replace_stem_conv",
]

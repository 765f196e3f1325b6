"""Loading a user's weights file into a model behind the feature API.

Accepted layouts, picked by which one matches the model's keys best: the library's native layout (what
``torch.save(net.state_dict())`` of that timm/torchvision network writes), cidpipe's own layout (a stage's
``model.safetensors`` of a plain student), each optionally under a wrapper prefix (``module.`` from
DistributedDataParallel, ``model.`` from Lightning/EMA wrappers). A checkpoint whose classifier has another
class count loads everything but the head; the head keeps its fresh init and the report says so.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from cidpipe.errors import ModelError
from cidpipe.models.adapters import NativeHeadAdapter, adapt_input_channels

WRAPPER_PREFIXES = ("module.", "model.")
HEAD_KEYS = ("classifier.weight", "classifier.bias")


@dataclass
class LoadReport:
    """What loading did, for the log and the manifest."""

    layout: str  # "native" (the library's own keys) or "cidpipe" (the adapter's keys)
    stripped_prefix: str = ""  # e.g. "module." when the file came from a DDP-wrapped model
    head_reset: bool = False
    checkpoint_classes: int | None = None  # the file's class count when it differs from the model's
    adapted_input_channels: list[str] = field(default_factory=list)  # stem weights summed/repeated

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _strip_wrappers(state: dict[str, Tensor]) -> tuple[dict[str, Tensor], str]:
    stripped = ""
    while state:
        prefix = next((p for p in WRAPPER_PREFIXES if all(k.startswith(p) for k in state)), None)
        if prefix is None:
            break
        state = {k[len(prefix) :]: v for k, v in state.items()}
        stripped += prefix
    return state, stripped


def _candidates(model: nn.Module, state: dict[str, Tensor]) -> list[tuple[dict[str, Tensor], LoadReport]]:
    stripped, prefix = _strip_wrappers(state)
    variants = [(state, "")] + ([(stripped, prefix)] if prefix else [])
    out = []
    for variant, removed in variants:
        if isinstance(model, NativeHeadAdapter):
            out.append((model.native_to_own(variant), LoadReport("native", removed)))
        out.append(
            (variant, LoadReport("cidpipe" if isinstance(model, NativeHeadAdapter) else "native", removed))
        )
    return out


def load_into(model: nn.Module, state: dict[str, Tensor], source: str, arch: str) -> LoadReport:
    """Load ``state`` into the feature-API ``model``; a ModelError naming the mismatch if it does not fit."""
    chosen, report = fit_state(model, state, source, arch)
    model.load_state_dict(with_layout_versions(model, chosen), strict=not report.head_reset)
    return report


def fit_state(
    model: nn.Module, state: dict[str, Tensor], source: str, arch: str, *, ignore_head: bool = False
) -> tuple[dict[str, Tensor], LoadReport]:
    """``state`` in ``model``'s own keys, checked against its keys and shapes (ModelError if it does not fit).

    ``ignore_head``: the classifier's shape is not compared (plan time: the class count is known once the
    data is read, and another class count only resets the head); a file without one is still refused.
    Works on meta tensors: only names and shapes are read.
    """
    own = model.state_dict()
    # ClassifierModel registers its head first; list it last, where every library writes it, so the
    # "first missing key" of a mismatch is the stem, not the head.
    own = {k: own[k] for k in sorted(own, key=lambda k: k.startswith("classifier."))}
    chosen, report = max(_candidates(model, state), key=lambda c: len(own.keys() & c[0].keys()))
    chosen = dict(chosen)
    num_classes = None if ignore_head else int(getattr(model, "num_classes", -1))
    head = chosen.get("classifier.weight")
    own_head = own.get("classifier.weight")
    if (
        head is not None
        and own_head is not None
        and head.dim() == 2
        and head.shape[1] == own_head.shape[1]
        and head.shape[0] != own_head.shape[0]
    ):
        # Same feature width, another class count: a pretrained body for a new dataset.
        report.head_reset, report.checkpoint_classes = True, int(head.shape[0])
        for key in HEAD_KEYS:
            chosen.pop(key, None)
    for key, value in list(chosen.items()):
        mine = own.get(key)
        if (
            mine is not None
            and value.dim() == 4
            and mine.dim() == 4
            and value.shape[1] == 3
            and mine.shape[1] != 3
            and value.shape[0] == mine.shape[0]
            and value.shape[2:] == mine.shape[2:]
        ):
            chosen[key] = adapt_input_channels(value, mine.shape[1]).to(mine.dtype)
            report.adapted_input_channels.append(key)
    allowed_missing = set(HEAD_KEYS) if report.head_reset else set()
    missing = [k for k in own if k not in chosen and k not in allowed_missing]
    unexpected = [k for k in chosen if k not in own]
    wrong = [k for k in own if k in chosen and tuple(own[k].shape) != tuple(chosen[k].shape)]
    if ignore_head:  # the file must have a classifier, of any class count; the stage checks its width
        wrong = [k for k in wrong if k not in HEAD_KEYS]
    if missing or unexpected or wrong:
        raw_keys = list(_strip_wrappers(state)[0])
        raise ModelError(
            _mismatch_message(
                model, own, chosen, missing, unexpected, wrong, source, arch, num_classes, raw_keys
            )
        )
    return chosen, report


def with_layout_versions(model: nn.Module, state: dict[str, Tensor]) -> dict[str, Tensor]:
    """``state`` carrying the per-module layout versions (``_metadata``) of ``model``'s own modules.

    torch.save keeps them, safetensors and any key renaming drop them, and some modules refuse a state
    dict without its version (torchvision's MNASNet raises). The model's own versions are the ones the
    keys were just checked against.
    """
    if getattr(state, "_metadata", None) is not None and not isinstance(model, NativeHeadAdapter):
        return state
    versioned = OrderedDict(state)
    versioned._metadata = model.state_dict()._metadata  # type: ignore[attr-defined]
    return versioned


def _native_name(model: nn.Module, key: str) -> str:
    if isinstance(model, NativeHeadAdapter):
        return next(iter(model.own_to_native({key: torch.empty(0)})), key)
    return key


def _mismatch_message(
    model, own, found, missing, unexpected, wrong, source, arch, num_classes, raw_keys
) -> str:
    classes = f" ({num_classes} classes)" if num_classes is not None else ""
    what = f"{source} does not match a {arch} model{classes}"
    if wrong and not missing and not unexpected:
        key = wrong[0]
        return (
            f"{what}: '{_native_name(model, key)}' has shape {tuple(found[key].shape)}, expected "
            f"{tuple(own[key].shape)}; likely another architecture or width (check model.arch and "
            "model.kwargs against what the weights were saved from)"
        )
    # Name only keys that are what the counts say: a missing key the model wants, an unexpected one the
    # file has.
    examples = []
    if missing:
        examples.append(f"first missing '{_native_name(model, missing[0])}'")
    if unexpected:
        examples.append(f"first unexpected '{_native_name(model, unexpected[0])}'")
    if wrong:
        key = wrong[0]
        examples.append(f"{len(wrong)} of another shape, first '{_native_name(model, key)}' "
                        f"{tuple(found[key].shape)} where {tuple(own[key].shape)} is expected")
    return (
        f"{what}: {len(missing)} expected keys missing and {len(unexpected)} unexpected; "
        f"{', '.join(examples)}; likely {_likely_cause(model, own, raw_keys)}"
    )


def _likely_cause(model: nn.Module, own: dict[str, Tensor], file_keys: list[str]) -> str:
    expected = set(own) | (set(model.own_to_native(own)) if isinstance(model, NativeHeadAdapter) else set())
    first_parts = {k.split(".", 1)[0] for k in file_keys}
    if len(first_parts) == 1 and all("." in k for k in file_keys):
        prefix = next(iter(first_parts)) + "."
        if sum(k[len(prefix) :] in expected for k in file_keys) > len(file_keys) // 2:
            return (
                f"a wrapper prefix: the file's keys start with '{prefix}'; save the inner model's "
                "state_dict() or strip the prefix"
            )
    return (
        "another architecture: the weights were saved from a different model (or a different "
        "model.kwargs); set model.arch to the one they came from"
    )


__all__ = ["LoadReport", "fit_state", "load_into", "with_layout_versions"]

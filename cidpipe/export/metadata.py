"""The metadata an exported artifact carries, so a device can run it without the recipe.

ONNX ``metadata_props`` hold strings only: lists and numbers are stored as JSON and decoded on read.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import cidpipe

# Keys whose values are JSON (everything else is a plain string).
JSON_KEYS = frozenset({"class_names", "input_shape", "mean", "std", "opset", "dynamic_batch"})


def make_metadata(
    *,
    class_names: Sequence[str] | None = None,
    input_shape: Sequence[int] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    recipe_id: str | None = None,
    arch: str | None = None,
    head: str | None = None,
    **extra: Any,
) -> dict[str, str]:
    """The standard keys (omitting the ones not given) encoded as strings for ``metadata_props``."""
    raw: dict[str, Any] = {
        "class_names": list(class_names) if class_names is not None else None,
        "input_shape": [int(d) for d in input_shape] if input_shape is not None else None,
        "mean": [float(v) for v in mean] if mean is not None else None,
        "std": [float(v) for v in std] if std is not None else None,
        "recipe_id": recipe_id,
        "arch": arch,
        "head": head,
        **extra,
    }
    return encode_metadata({k: v for k, v in raw.items() if v is not None})


def encode_metadata(values: Mapping[str, Any]) -> dict[str, str]:
    """Strings stay strings; anything else (lists, numbers, bools) becomes JSON."""
    return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in values.items()}


def decode_metadata(props: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in props.items():
        if key in JSON_KEYS:
            try:
                out[key] = json.loads(value)
                continue
            except json.JSONDecodeError:
                pass  # written by another tool: keep the raw string rather than fail on read
        out[key] = value
    return out


def base_metadata() -> dict[str, str]:
    return {"cidpipe_version": cidpipe.__version__}

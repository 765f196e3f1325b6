"""Load a gate file (or a recipe's ``gate:`` section) into a validated :class:`GateConfig`."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from cidpipe.errors import UsageError
from cidpipe.gate.config import GateConfig, LatencyLimit
from cidpipe.untrusted import load_yaml_file


def load_gate_config(source: Path | str | dict[str, Any]) -> GateConfig:
    """Validate a gate YAML file or dict; unknown keys are usage errors with a near-miss suggestion.

    The file may hold the gate keys at the top level or under ``gate:`` (so a recipe works too). A
    relative ``baseline`` path is resolved against the gate file's directory, so the gate behaves the
    same from any working directory.
    """
    origin = "gate config"
    base_dir: Path | None = None
    if isinstance(source, dict):
        data: Any = source
    else:
        path = Path(source)
        origin = str(path)
        base_dir = path.parent
        data = load_yaml_file(path, "gate file")
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UsageError(f"{origin} must be a mapping of gate keys (min_top1, max_drop, latency, ...)")
    if set(data) == {"gate"} or ("gate" in data and isinstance(data.get("gate"), dict)):
        data = data["gate"] or {}
    try:
        config = GateConfig.model_validate(data)
    except ValidationError as err:
        raise UsageError(f"{origin}: {_describe(err)}") from err
    if config.baseline is not None and base_dir is not None and not config.baseline.is_absolute():
        config.baseline = base_dir / config.baseline
    return config


def _describe(err: ValidationError) -> str:
    """One actionable line for the first problem pydantic found."""
    errors = err.errors()
    # An unknown key usually explains the other errors (a misspelt required key is also "missing").
    first = next((error for error in errors if error["type"] == "extra_forbidden"), errors[0])
    location = [part for part in first["loc"]]
    dotted = ".".join(str(part) for part in location)
    if first["type"] == "extra_forbidden":
        key = str(location[-1])
        model: type[BaseModel] = LatencyLimit if "latency" in location[:-1] else GateConfig
        hint = difflib.get_close_matches(key, list(model.model_fields), n=1, cutoff=0.5)
        suggestion = f"did you mean '{hint[0]}'? " if hint else ""
        known = ", ".join(model.model_fields)
        return f"unknown key '{dotted}'; {suggestion}known keys: {known}"
    return f"'{dotted}': {first['msg']} (got {first.get('input')!r})"



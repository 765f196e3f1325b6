"""The one table of artifact formats: what each is called, its suffix, what it needs and which flags it takes.

The CLI help, flag validation, the bench backend choice and ``format_for_path`` all read this table, so a
new format is one row here.
"""

from __future__ import annotations

import difflib
import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cidpipe.errors import UsageError


@dataclass(frozen=True)
class ExportFormat:
    name: str
    suffixes: tuple[str, ...]  # the first is what cidpipe writes; the rest are accepted on read
    requires: tuple[str, ...]  # importable Python modules needed to produce it
    flags: tuple[str, ...]  # the options this format takes
    backends: tuple[str, ...]  # bench backends that can run it
    produced_by: str  # "train" | "export" | "quantize"
    description: str

    @property
    def suffix(self) -> str:
        return self.suffixes[0]

    @property
    def cli_exportable(self) -> bool:
        return self.produced_by == "export"

    def missing_requirements(self) -> list[str]:
        """The required modules that are not importable here (empty when the format can be produced)."""
        return [mod for mod in self.requires if importlib.util.find_spec(mod) is None]


_TRT_FLAGS = (
    "opset",
    "dynamic_batch",
    "precision",
    "workspace_mb",
    "timing_cache",
    "min_batch",
    "opt_batch",
    "max_batch",
)

FORMATS: tuple[ExportFormat, ...] = (
    ExportFormat(
        "torch",
        (".safetensors", ".pt", ".pth"),
        ("torch",),
        (),
        ("torch",),
        "train",
        "the trained PyTorch student (weights as safetensors)",
    ),
    ExportFormat(
        "onnx",
        (".onnx",),
        ("onnx", "onnxruntime"),
        ("opset", "dynamic_batch"),
        ("onnxruntime", "tensorrt"),
        "export",
        "FP32 ONNX, checked, dynamic batch, parity-tested",
    ),
    ExportFormat(
        "onnx-int8",
        (".int8.onnx",),
        ("onnx", "onnxruntime"),
        ("calibration", "samples", "percentile", "per_channel", "reduce_range", "quant_target", "max_drop"),
        ("onnxruntime", "tensorrt"),
        "quantize",
        "INT8 QDQ ONNX from static calibration on train images",
    ),
    ExportFormat(
        "onnx-fp16",
        (".fp16.onnx",),
        ("onnx", "onnxruntime"),
        ("keep_io_types",),
        ("onnxruntime", "tensorrt"),
        "quantize",
        "FP16 weights and compute, FP32 inputs/outputs",
    ),
    ExportFormat(
        "trt",
        (".engine", ".plan"),
        ("tensorrt",),
        _TRT_FLAGS,
        ("tensorrt",),
        "export",
        "TensorRT engine, built on the GPU it will run on",
    ),
)
_ALIASES = {"tensorrt": "trt", "engine": "trt", "int8": "onnx-int8", "fp16": "onnx-fp16", "pytorch": "torch"}


def format_names() -> list[str]:
    return [f.name for f in FORMATS]


def get_format(name: str) -> ExportFormat:
    """The row for ``name`` (or an alias such as ``tensorrt``); unknown -> UsageError with the choices."""
    key = _ALIASES.get(str(name).lower(), str(name).lower())
    for fmt in FORMATS:
        if fmt.name == key:
            return fmt
    close = difflib.get_close_matches(str(name).lower(), format_names() + list(_ALIASES), n=1)
    hint = f"did you mean {_ALIASES.get(close[0], close[0])!r}? " if close else ""
    raise UsageError(f"unknown export target {name!r}; {hint}choose one of: {', '.join(format_names())}")


def validate_flags(fmt: ExportFormat | str, flags: Mapping[str, Any]) -> dict[str, Any]:
    """The flags that were set (None = not given); a flag the format does not take is a UsageError."""
    fmt = get_format(fmt) if isinstance(fmt, str) else fmt
    given = {k: v for k, v in flags.items() if v is not None}
    wrong = sorted(k for k in given if k not in fmt.flags)
    if wrong:
        takes = ", ".join(fmt.flags) if fmt.flags else "no options"
        shown = ", ".join("--" + k.replace("_", "-") for k in wrong)
        raise UsageError(f"{shown} does not apply to target {fmt.name!r}; {fmt.name} takes: {takes}")
    return given


def format_for_path(path: Path | str) -> ExportFormat:
    """The format of an artifact from its file name (the longest matching suffix wins)."""
    name = Path(path).name.lower()
    matches = [(len(s), fmt) for fmt in FORMATS for s in fmt.suffixes if name.endswith(s)]
    if not matches:
        known = ", ".join(s for fmt in FORMATS for s in fmt.suffixes)
        raise UsageError(f"cannot tell the format of {path}: its name should end with one of {known}")
    return max(matches, key=lambda m: m[0])[1]


def formats_help() -> str:
    """A plain-text table for ``cidpipe export --list`` and the ``--target`` help."""
    header = ("format", "suffix", "made by", "needs", "bench backends", "options")
    rows = [header] + [
        (
            f.name,
            f.suffix,
            f.produced_by,
            ", ".join(f.requires),
            ", ".join(f.backends),
            ", ".join(f.flags) or "-",
        )
        for f in FORMATS
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)

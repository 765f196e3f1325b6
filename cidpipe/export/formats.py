"""The one table of artifact formats: each row is a format a manifest artifact carries and a bench row
reports (``onnx-int8``), its file suffixes, what produces it, what it needs, its flags and the bench backends
that can run it.

Read by: the manifest (an artifact's ``format`` must be a row here), the bench (what it measures is each
artifact's ``backends`` intersected with the recipe's), the recipe check and schema (export targets and
bench backends), and ``cidpipe export`` (``--list``, the flags each ``--target`` takes). An export *target*
(``onnx``, ``trt``) is a family of rows: ``--target trt`` makes a ``trt-<precision>`` artifact.
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
    produced_by: str  # the verb that makes it: "train" (and distill) | "export" | "quantize"
    description: str
    target: str = ""  # the export target family it belongs to ("onnx", "trt"); default: the name

    @property
    def suffix(self) -> str:
        return self.suffixes[0]

    @property
    def family(self) -> str:
        return self.target or self.name

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

_INT8_FLAGS = (
    "calibration", "samples", "percentile", "per_channel", "reduce_range", "quant_target", "max_drop",
)  # fmt: skip


def _trt(precision: str, description: str) -> ExportFormat:
    return ExportFormat(
        f"trt-{precision}", (".engine", ".plan"), ("tensorrt",), _TRT_FLAGS, ("tensorrt",), "export",
        description, target="trt",
    )  # fmt: skip


FORMATS: tuple[ExportFormat, ...] = (
    ExportFormat(
        "torch", (".safetensors", ".pt", ".pth"), ("torch",), (), ("torch",), "train",
        "the trained PyTorch model (weights as safetensors)",
    ),
    ExportFormat(
        "onnx-fp32", (".onnx",), ("onnx", "onnxruntime"), ("opset", "dynamic_batch"),
        ("onnxruntime",), "export", "FP32 ONNX, checked, dynamic batch, parity-tested",
        target="onnx",
    ),
    ExportFormat(
        "onnx-int8", (".int8.onnx", ".int8-trt.onnx"), ("onnx", "onnxruntime"), _INT8_FLAGS,
        ("onnxruntime",), "quantize", "INT8 QDQ ONNX from static calibration on train images",
        target="onnx",
    ),
    ExportFormat(
        "onnx-fp16", (".fp16.onnx",), ("onnx", "onnxruntime"), ("keep_io_types",),
        ("onnxruntime",), "quantize", "FP16 weights and compute, FP32 inputs/outputs",
        target="onnx",
    ),
    _trt("fp32", "TensorRT FP32 engine, built on the GPU it will run on"),
    _trt("fp16", "TensorRT FP16 engine, built on the GPU it will run on"),
    _trt("int8", "TensorRT INT8 engine from the QDQ model (explicit quantization)"),
)  # fmt: skip
_ALIASES = {
    "onnx": "onnx-fp32", "tensorrt": "trt", "engine": "trt", "int8": "onnx-int8", "fp16": "onnx-fp16",
    "pytorch": "torch",
}  # fmt: skip


def export_targets() -> list[str]:
    """What ``export.targets`` / ``cidpipe export --target`` accept: the families export produces."""
    return list(dict.fromkeys(f.family for f in FORMATS if f.cli_exportable))


def target_formats(target: str) -> list[ExportFormat]:
    """The rows of export target ``target`` (``trt`` -> trt-fp32, trt-fp16, trt-int8)."""
    key = str(target).lower()
    if key not in export_targets():  # an alias or a row name: tensorrt -> trt, onnx-fp32 -> onnx
        key = _ALIASES.get(key, key)
        key = next((f.family for f in FORMATS if f.name == key), key)
    rows = [f for f in FORMATS if f.family == key and f.cli_exportable]
    if not rows:
        close = difflib.get_close_matches(key, export_targets(), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        choices = ", ".join(export_targets())
        raise UsageError(f"unknown export target {target!r}; {hint}choose one of: {choices}")
    return rows


def format_names() -> list[str]:
    return [f.name for f in FORMATS]


def get_format(name: str) -> ExportFormat:
    """The row for ``name`` (or an alias such as ``onnx``; a target such as ``trt`` gives its first row);
    unknown -> UsageError with the choices."""
    key = _ALIASES.get(str(name).lower(), str(name).lower())
    for fmt in FORMATS:
        if fmt.name == key:
            return fmt
    family = [fmt for fmt in FORMATS if fmt.family == key]
    if family:
        return family[0]
    close = difflib.get_close_matches(str(name).lower(), format_names() + list(_ALIASES), n=1)
    hint = f"did you mean {_ALIASES.get(close[0], close[0])!r}? " if close else ""
    raise UsageError(f"unknown artifact format {name!r}; {hint}choose one of: {', '.join(format_names())}")


def validate_flags(fmt: ExportFormat | str, flags: Mapping[str, Any]) -> dict[str, Any]:
    """The flags that were set (None = not given); a flag the format does not take is a UsageError."""
    fmt = get_format(fmt) if isinstance(fmt, str) else fmt
    given = {k: v for k, v in flags.items() if v is not None}
    wrong = sorted(k for k in given if k not in fmt.flags)
    if wrong:
        takes = ", ".join(fmt.flags) if fmt.flags else "no options"
        shown = ", ".join("--" + k.replace("_", "-") for k in wrong)
        raise UsageError(f"{shown} does not apply to target {fmt.family!r}; {fmt.family} takes: {takes}")
    return given


def format_for_path(path: Path | str) -> ExportFormat:
    """The format of a file from its name (the longest matching suffix wins); for a TensorRT engine, whose
    precision its name does not tell, the first row of its family. Manifests record the exact row."""
    name = Path(path).name.lower()
    matches = [(len(s), fmt) for fmt in FORMATS for s in fmt.suffixes if name.endswith(s)]
    if not matches:
        known = ", ".join(s for fmt in FORMATS for s in fmt.suffixes)
        raise UsageError(f"cannot tell the format of {path}: its name should end with one of {known}")
    return max(matches, key=lambda m: m[0])[1]


def formats_json() -> list[dict[str, object]]:
    """The formats table as ``cidpipe export --list --json`` prints it: one object per format."""
    return [
        {"format": f.name, "suffixes": list(f.suffixes), "produced_by": f.produced_by,
         "requires": list(f.requires), "backends": list(f.backends), "flags": list(f.flags),
         "description": f.description}
        for f in FORMATS
    ]  # fmt: skip


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

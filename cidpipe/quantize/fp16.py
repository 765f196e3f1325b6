"""FP16 conversion of an FP32 ONNX file (weights and compute in half, FP32 inputs/outputs by default)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import onnx

from cidpipe.atomic import atomic_write_with
from cidpipe.errors import MissingDependency, ModelError
from cidpipe.export.torch2onnx import load_onnx_checked


def convert_fp16(fp32_onnx: Path, out_path: Path, *, keep_io_types: bool = True) -> dict[str, Any]:
    """Convert with onnxruntime's own converter (shipped in every onnxruntime wheel, so no extra dependency).

    ``keep_io_types`` keeps the graph's input/output float32 (Cast nodes at the edges), so callers feed and
    read the same arrays as for the FP32 model.
    """
    try:
        from onnxruntime.transformers.float16 import convert_float_to_float16
    except ImportError as err:  # stripped-down onnxruntime builds
        raise MissingDependency(
            "onnxruntime.transformers.float16 is not importable here; install the full onnxruntime wheel"
        ) from err
    fp32_onnx, out_path = Path(fp32_onnx), Path(out_path)
    proto = load_onnx_checked(fp32_onnx)
    try:
        half = convert_float_to_float16(proto, keep_io_types=keep_io_types)
        _sort_topologically(half.graph)  # the converter appends its input Casts at the end of the graph
        onnx.checker.check_model(half)
    except Exception as err:
        raise ModelError(f"cannot convert {fp32_onnx} to FP16: {str(err).strip().splitlines()[0]}") from err
    props = {p.key: p.value for p in proto.metadata_props}
    props["precision"] = "fp16"
    del half.metadata_props[:]
    onnx.helper.set_model_props(half, props)

    def write(tmp: Path) -> None:
        onnx.save_model(half, str(tmp), save_as_external_data=False)

    atomic_write_with(out_path, write)
    return {
        "converter": "onnxruntime.transformers.float16",
        "keep_io_types": keep_io_types,
        "bytes_fp32": fp32_onnx.stat().st_size,
        "bytes_fp16": out_path.stat().st_size,
    }


def _sort_topologically(graph: onnx.GraphProto) -> None:
    """Reorder nodes so each comes after the producers of its inputs (stable; leftovers keep their order)."""
    available = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    progress = True
    while pending and progress:
        progress, waiting = False, []
        for node in pending:
            if all(name in available for name in node.input):
                ordered.append(node)
                available.update(node.output)
                progress = True
            else:
                waiting.append(node)
        pending = waiting
    ordered.extend(pending)  # outer-scope names (subgraphs): leave those for the checker to judge
    copies = [onnx.NodeProto.FromString(n.SerializeToString()) for n in ordered]
    del graph.node[:]
    graph.node.extend(copies)

"""FP16 conversion of an FP32 ONNX file (weights and compute in half, FP32 inputs/outputs by default)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
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


def measure_fp16(
    fp32_onnx: Path, fp16_onnx: Path, val: tuple | None, max_drop: float | None
) -> dict[str, Any]:
    """Validation top-1 of both graphs, the drop and the agreement, as INT8 records them; ParityError (exit 6)
    when ``max_drop`` is missed. FP16 rarely costs accuracy, but a network with large activations can
    overflow half precision (65504), and then the budget is what catches it before the board does."""
    from cidpipe.errors import ParityError
    from cidpipe.export.ort_run import make_session, run_onnx, top1_percent

    if val is None:  # the paper protocol: no validation split; the bench measures on test
        return {"top1_fp32": None, "top1_fp16": None, "drop": None}
    images, labels = val
    logits32 = run_onnx(make_session(fp32_onnx), images)
    logits16 = run_onnx(make_session(fp16_onnx), images)
    top1_fp32, top1_fp16 = top1_percent(logits32, labels), top1_percent(logits16, labels)
    info = {
        "top1_fp32": top1_fp32, "top1_fp16": top1_fp16, "drop": top1_fp32 - top1_fp16,
        "agreement": float((logits32.argmax(1) == logits16.argmax(1)).mean() * 100.0),
        "val_images": len(labels), "budget_met": max_drop is None or top1_fp32 - top1_fp16 <= max_drop,
    }  # fmt: skip
    if not info["budget_met"]:
        finite = "" if np.isfinite(logits16).all() else "; its logits are not all finite (FP16 overflow)"
        raise ParityError(
            f"FP16 drop {info['drop']:.2f} points > budget {max_drop:g} (FP32 top-1 {top1_fp32:.2f}%, FP16 "
            f"{top1_fp16:.2f}%, {len(labels)} validation images){finite}; ship the FP32 artifact or loosen "
            "quantize.max_drop"
        )
    return info

"""Run an ONNX file in onnxruntime in batches: shared by parity checks, quantization and benchmarks."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cidpipe.errors import ModelError, UsageError


def make_session(
    path: Path,
    *,
    providers: Sequence[str] = ("CPUExecutionProvider",),
    threads: int | None = None,
    optimization: str = "all",
):
    """An ``onnxruntime.InferenceSession``; ``optimization`` is disabled|basic|extended|all."""
    import onnxruntime as ort

    levels = {
        "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }
    if optimization not in levels:
        raise UsageError(
            f"unknown onnxruntime optimization level {optimization!r}; choose one of {list(levels)}"
        )
    opts = ort.SessionOptions()
    opts.graph_optimization_level = levels[optimization]
    if threads is not None:
        opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
    missing = [p for p in providers if p not in ort.get_available_providers()]
    if missing:
        raise UsageError(f"onnxruntime here lacks {missing}; available: {ort.get_available_providers()}")
    try:
        return ort.InferenceSession(str(path), opts, providers=list(providers))
    except Exception as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelError(f"onnxruntime cannot load {path}: {first}") from err


def run_onnx(session, x: np.ndarray, *, batch_size: int = 64) -> np.ndarray:
    """Outputs of the first graph output for all of ``x``, run ``batch_size`` rows at a time.

    A model exported with a fixed batch runs row groups of that size, the last one zero-padded.
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    meta = session.get_inputs()[0]
    fixed = meta.shape[0] if isinstance(meta.shape[0], int) and meta.shape[0] > 0 else None
    step = fixed or batch_size
    outputs = []
    for start in range(0, len(x), step):
        chunk = x[start : start + step]
        n = len(chunk)
        if fixed and n < fixed:
            chunk = np.concatenate([chunk, np.zeros((fixed - n, *chunk.shape[1:]), np.float32)])
        try:
            (out,) = session.run([session.get_outputs()[0].name], {meta.name: chunk})
        except Exception as err:  # onnxruntime's InvalidArgument/Fail: one line, not a C++ dump
            raise ModelError(
                f"the ONNX model does not run on inputs of shape {list(chunk.shape)}: {_first_line(err)}; "
                "is it the model of this recipe?"
            ) from err
        outputs.append(np.asarray(out)[:n])
    if not outputs:
        raise UsageError("no input rows to run the model on")
    return np.concatenate(outputs).astype(np.float32, copy=False)


def output_classes(session) -> int | None:
    """The class count of a session's logits output ([N, classes]) when the graph fixes it."""
    shape = session.get_outputs()[0].shape
    return shape[1] if len(shape) == 2 and isinstance(shape[1], int) and shape[1] > 0 else None


def top1_percent(logits: np.ndarray, labels: np.ndarray) -> float:
    return float((logits.argmax(1) == np.asarray(labels)).mean() * 100.0)


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:300] if text else type(err).__name__


def _dims(value_info) -> list[int | None]:
    """Static dimensions of a graph input/output (None for symbolic or unknown ones)."""
    shape = value_info.type.tensor_type.shape
    return [int(d.dim_value) if d.HasField("dim_value") and d.dim_value > 0 else None for d in shape.dim]


def check_onnx_io(path: Path, image_shape: Sequence[int] | None, num_classes: int | None) -> None:
    """ModelError (exit 4) unless ``path`` takes [N, *image_shape] images and returns [N, num_classes].

    Only static dimensions are compared (a dynamic batch axis is fine); ``None`` skips that side.
    """
    import onnx

    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path} does not exist; pass an .onnx file written by `cidpipe export`")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as err:  # protobuf DecodeError and friends
        raise ModelError(f"{path} is not an ONNX model: {_first_line(err)}") from err
    initializers = {init.name for init in proto.graph.initializer}
    inputs = [vi for vi in proto.graph.input if vi.name not in initializers]
    if len(inputs) != 1 or not proto.graph.output:
        raise ModelError(
            f"{path} has {len(inputs)} inputs and {len(proto.graph.output)} outputs; a cidpipe classifier "
            "has one image input and one logits output"
        )
    got_in, got_out = _dims(inputs[0]), _dims(proto.graph.output[0])
    if image_shape is not None:
        wanted = [None, *(int(d) for d in image_shape)]
        if len(got_in) != len(wanted) or any(
            g is not None and w is not None and g != w for g, w in zip(got_in, wanted, strict=True)
        ):
            raise ModelError(
                f"{path} takes input {_shape_text(got_in)}, but this recipe's images are "
                f"{_shape_text(wanted)}; pass the ONNX exported from this run (cidpipe export RUN)"
            )
    if num_classes is not None and (len(got_out) != 2 or got_out[1] not in (None, int(num_classes))):
        raise ModelError(
            f"{path} returns {_shape_text(got_out)} logits, but this recipe's dataset has {num_classes} "
            "classes; pass the ONNX exported from this run (cidpipe export RUN)"
        )


def _shape_text(dims: Sequence[int | None]) -> str:
    return "[" + ", ".join("N" if d is None else str(d) for d in dims) + "]"

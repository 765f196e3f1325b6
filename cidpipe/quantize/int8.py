"""Static INT8 quantization (onnxruntime, QDQ format) with calibration on training images and an
optional accuracy budget.

Types per target:
- ``cpu``: U8 activations + S8 weights, the pair ORT's x86/ARM kernels are fastest with. ``reduce_range``
  (7-bit weights) only matters on x86 CPUs without VNNI, where the U8S8 AVX2/AVX-512 path accumulates in
  int16 and can saturate; VNNI (and ARM dot-product) CPUs need not lose the bit, so it is off by default and
  a recipe switch (quantize.reduce_range) for old x86 targets.
- ``trt``: S8/S8 symmetric (zero point 0, which TensorRT's explicit quantization requires), Q/DQ on weights
  too (``AddQDQPairToWeight``: TensorRT folds the pair itself) and a dedicated Q/DQ pair per consumer so its
  fusions are not blocked by shared pairs.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import json
import logging
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quant_pre_process,
    quantize_static,
)

from cidpipe.atomic import atomic_write_with
from cidpipe.errors import ModelError, ParityError, UsageError
from cidpipe.export.ort_run import make_session, run_onnx, top1_percent
from cidpipe.export.torch2onnx import load_onnx_checked
from cidpipe.quantize.budget import fit_accuracy_budget
from cidpipe.quantize.calibration import ArrayCalibrationReader, calibration_fingerprint, check_calibration
from cidpipe.quantize.config import QuantizeConfig

SENSITIVE_OP_TYPES = ("Conv", "Gemm", "MatMul")
_METHODS = {
    "minmax": CalibrationMethod.MinMax,
    "entropy": CalibrationMethod.Entropy,
    "percentile": CalibrationMethod.Percentile,
}
_HAS_CALIB_CACHE = "calibration_cache_path" in inspect.signature(quantize_static).parameters


def judging_optimization(target: str) -> str:
    """The ORT optimisation level an INT8 variant's accuracy is measured with. A TensorRT (S8S8) graph is
    judged on its literal Q/DQ arithmetic (optimisations off): TensorRT accumulates in int32, while ORT's
    fused x86 S8S8 kernels on CPUs without VNNI saturate (measured: 3.20 points "lost" on a MobileNetV2
    whose exact graph lost 0.03, BENCHMARKS.md). A CPU graph is judged by the kernels this machine runs it
    with."""
    return "disabled" if target == "trt" else "all"


def top1_agreement(fp32_onnx: Path, int8_onnx: Path, images: np.ndarray, target: str) -> float:
    """Percent of ``images`` on which the INT8 graph's top-1 class is the FP32 graph's, with the arithmetic
    the target is judged on. A drop inside ``max_drop`` can still hide many flipped predictions (a 60 %
    model trades right and wrong answers), and the bench refuses an artifact below ``bench.min_agreement``."""
    level = judging_optimization(target)
    fp32 = run_onnx(make_session(fp32_onnx, optimization=level), images).argmax(1)
    int8 = run_onnx(make_session(int8_onnx, optimization=level), images).argmax(1)
    return float((fp32 == int8).mean() * 100.0)


def quant_settings(cfg: QuantizeConfig) -> tuple[QuantType, QuantType, dict[str, Any]]:
    """(activation type, weight type, extra_options) for ``cfg.target`` and the calibration method."""
    extra: dict[str, Any] = {}
    if cfg.target == "cpu":
        act, weight = QuantType.QUInt8, QuantType.QInt8
    else:
        act, weight = QuantType.QInt8, QuantType.QInt8
        extra.update(
            ActivationSymmetric=True,
            WeightSymmetric=True,
            AddQDQPairToWeight=True,
            DedicatedQDQPair=True,
            QDQOpTypePerChannelSupportToAxis={"MatMul": 1},
        )
    if cfg.calibration.method == "percentile":
        extra["CalibPercentile"] = float(cfg.calibration.percentile)
    return act, weight, extra


def quantize_static_int8(
    fp32_onnx: Path,
    out_path: Path,
    calib_x: np.ndarray | None,
    cfg: QuantizeConfig,
    *,
    val: tuple[np.ndarray, np.ndarray] | None = None,
    nodes_to_exclude: Sequence[str] = (),
    batch_size: int = 32,
    on_budget_miss: str = "raise",
) -> dict[str, Any]:
    """Quantize ``fp32_onnx`` to ``out_path``; returns what was done and, with ``val``, what it cost in top-1.

    With ``cfg.max_drop`` and ``val`` the budget is enforced (see budget.py); ParityError when it cannot be.
    ``nodes_to_exclude`` are node names always kept in float (e.g. from :func:`softmax_branch_nodes`).
    ``on_budget_miss="return"`` writes the budget's last attempt instead of raising, with ``budget_met``
    False and the reason in ``budget_message`` (quantization-aware fine-tuning takes over from there).
    """
    calib = check_calibration(calib_x)
    fp32_onnx, out_path = Path(fp32_onnx), Path(out_path)
    fp32_proto = load_onnx_checked(fp32_onnx)
    if cfg.max_drop is not None and val is None:
        raise UsageError("quantize.max_drop is set but no validation images were given to measure the drop")
    act, weight, extra = quant_settings(cfg)
    method = _METHODS[cfg.calibration.method]
    with tempfile.TemporaryDirectory(prefix="cidpipe-quant-") as work_dir:
        work = Path(work_dir)
        pre = _preprocess(fp32_onnx, work / "pre.onnx")
        pre_graph = onnx.load(str(pre)).graph
        input_name = pre_graph.input[0].name
        float_stem = cfg.float_stem if cfg.float_stem is not None else cfg.target == "cpu"
        stem = input_convolutions(pre_graph) if float_stem else []
        excluded = [*nodes_to_exclude, *(n for n in stem if n not in nodes_to_exclude)]
        reader = ArrayCalibrationReader(input_name, calib, batch_size)
        cache = work / "calibration.json" if _HAS_CALIB_CACHE else None
        counter = iter(range(1_000_000))

        def quantize(nodes_in_float: list[str]) -> Path:
            out = work / f"int8_{next(counter)}.onnx"
            reader.rewind()
            kwargs = {"calibration_cache_path": str(cache)} if cache is not None else {}
            try:
                quantize_static(
                    str(pre),
                    str(out),
                    reader,
                    quant_format=QuantFormat.QDQ,
                    per_channel=cfg.per_channel,
                    reduce_range=cfg.reduce_range,
                    activation_type=act,
                    weight_type=weight,
                    nodes_to_exclude=[*excluded, *nodes_in_float],
                    calibrate_method=method,
                    extra_options=extra,
                    **kwargs,
                )
            except Exception as err:
                raise ModelError(f"onnxruntime could not quantize {fp32_onnx}: {_first_line(err)}") from err
            return out

        with _quiet_ort_logging():
            chosen = quantize([])
            result: dict[str, Any] = {
                "top1_fp32": None,
                "top1_int8": None,
                "drop": None,
                "nodes_in_float": [],
                "calibration": {"method": cfg.calibration.method, **calibration_fingerprint(calib)},
                "activation_type": _type_name(act),
                "weight_type": _type_name(weight),
                "per_channel": cfg.per_channel,
                "reduce_range": cfg.reduce_range,
                "target": cfg.target,
                "quant_format": "QDQ",
                "nodes_excluded": excluded,
                "float_stem": stem,
                "quantizations": 1,
            }
            if val is not None:
                val_x, val_y = np.asarray(val[0], np.float32), np.asarray(val[1])
                if len(val_x) == 0:
                    raise UsageError("validation images for the INT8 accuracy check are empty")

                optimization = judging_optimization(cfg.target)
                result["judged_with"] = f"onnxruntime CPU EP, optimizations {optimization}"

                def top1_of(path: Path, level: str = optimization) -> float:
                    return top1_percent(run_onnx(make_session(path, optimization=level), val_x), val_y)

                top1_fp32, top1_int8 = top1_of(fp32_onnx), top1_of(chosen)
                if cfg.max_drop is not None and top1_fp32 - top1_int8 > cfg.max_drop:
                    outcome = fit_accuracy_budget(
                        quantize,
                        top1_of,
                        top1_fp32=top1_fp32,
                        top1_int8=top1_int8,
                        candidates=[n for n in quantizable_nodes(pre) if n not in excluded],
                        max_drop=cfg.max_drop,
                        max_candidates=cfg.max_sensitivity_candidates,
                        max_float_nodes=cfg.max_float_nodes,
                        raise_on_miss=False,
                    )
                    chosen, top1_int8 = outcome.model_path, outcome.top1_int8
                    result.update(
                        nodes_in_float=outcome.nodes_in_float,
                        sensitivity=outcome.sensitivity,
                        quantizations=1 + outcome.quantizations,
                    )
                    if not outcome.met:
                        message = outcome.message + _kernel_diagnosis(
                            cfg, top1_fp32, top1_of(chosen, "disabled"), result)
                        if on_budget_miss == "raise":
                            raise ParityError(message)
                        result["budget_message"] = message
                result.update(top1_fp32=top1_fp32, top1_int8=top1_int8, drop=top1_fp32 - top1_int8)
                if cfg.max_drop is not None:
                    result["budget_met"] = top1_fp32 - top1_int8 <= cfg.max_drop
        _save_with_metadata(chosen, out_path, fp32_proto, result)
    return result


def _kernel_diagnosis(cfg: QuantizeConfig, top1_fp32: float, top1_exact: float, result: dict) -> str:
    """When a CPU graph misses the budget, whether its exact Q/DQ arithmetic does too: if not, the loss is
    this machine's INT8 kernels, not quantization, and QAT cannot train it away (it simulates the exact
    arithmetic); the text appended to the budget message says what to do instead."""
    if cfg.target != "cpu":
        return ""
    result["top1_int8_exact"] = top1_exact
    if top1_fp32 - top1_exact > cfg.max_drop:
        return ""
    from cidpipe.machine import x86_without_vnni

    cause = ("ORT's U8S8 kernels saturating on this x86 CPU without VNNI (set quantize.reduce_range: true "
             "for such CPUs)" if x86_without_vnni() and not cfg.reduce_range else
             "this machine's optimised INT8 kernels")
    result["kernel_diagnosis"] = (
        f"the graph's exact Q/DQ arithmetic drops only {top1_fp32 - top1_exact:+.2f} points: the rest is "
        f"{cause}; or judge the artifact on its target board (cidpipe bench --device)")
    return "; but " + result["kernel_diagnosis"]


def quantizable_nodes(onnx_path: Path, op_types: Sequence[str] = SENSITIVE_OP_TYPES) -> list[str]:
    """Names of the nodes the budget fallback may keep in float, in graph order."""
    return [n.name for n in onnx.load(str(onnx_path)).graph.node if n.op_type in op_types]


def input_convolutions(graph: onnx.GraphProto) -> list[str]:
    """The Conv nodes that read a graph input directly: the image's stem convolution."""
    inputs = {i.name for i in graph.input}
    return [n.name for n in graph.node if n.op_type == "Conv" and n.input and n.input[0] in inputs]


def softmax_branch_nodes(onnx_path: Path) -> list[str]:
    """CID's context branch: every Softmax and the MatMul/Gemm nodes that consume its output (p @ D)."""
    graph = onnx.load(str(onnx_path)).graph
    softmax_out = {o for n in graph.node if n.op_type == "Softmax" for o in n.output}
    return [
        n.name
        for n in graph.node
        if n.op_type == "Softmax" or (n.op_type in ("MatMul", "Gemm") and softmax_out & set(n.input))
    ]


@contextlib.contextmanager
def _working_directory(path: Path) -> Iterator[None]:
    previous = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


def _preprocess(src: Path, dst: Path) -> Path:
    """ORT's recommended pre-processing (shape inference + graph optimisation), then name every node so
    nodes_to_exclude can address it."""
    try:
        # onnxruntime's pre-processing may write temporary files (sym_shape_infer_temp.onnx, external-data
        # blobs) into the current directory: run it from a private one, so a user's folder stays clean.
        source, target = Path(src).resolve(), Path(dst).resolve()  # before leaving the caller's directory
        with tempfile.TemporaryDirectory(prefix="cidpipe-ort-") as scratch, _working_directory(Path(scratch)):
            quant_pre_process(str(source), str(target), skip_symbolic_shape=False)
    except Exception as err:
        raise ModelError(
            f"onnxruntime cannot pre-process {src} for quantization: {_first_line(err)}"
        ) from err
    proto = onnx.load(str(dst))
    for i, node in enumerate(proto.graph.node):
        if not node.name:
            node.name = f"{node.op_type}_{i}"
    onnx.save_model(proto, str(dst))
    return dst


def _save_with_metadata(
    src: Path, out_path: Path, fp32_proto: onnx.ModelProto, result: dict[str, Any]
) -> None:
    proto = onnx.load(str(src))
    props = {p.key: p.value for p in fp32_proto.metadata_props}
    props.update(
        precision="int8",
        quantization=json.dumps(
            {
                k: result[k]
                for k in (
                    "calibration",
                    "activation_type",
                    "weight_type",
                    "per_channel",
                    "reduce_range",
                    "target",
                    "nodes_excluded",
                    "nodes_in_float",
                    "drop",
                    "path",
                )
                if k in result
            }
        ),
    )
    del proto.metadata_props[:]
    onnx.helper.set_model_props(proto, props)
    onnx.checker.check_model(proto)

    def write(tmp: Path) -> None:
        onnx.save_model(proto, str(tmp), save_as_external_data=False)

    atomic_write_with(out_path, write)


def _type_name(qtype: QuantType) -> str:
    return {QuantType.QUInt8: "uint8", QuantType.QInt8: "int8"}.get(qtype, str(qtype))


@contextlib.contextmanager
def _quiet_ort_logging() -> Iterator[None]:
    """ORT's quantizer logs warnings through the root logger and prints histogram progress to stdout."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.setLevel(level)


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:300] if text else type(err).__name__

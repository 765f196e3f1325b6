"""PyTorch module -> one self-contained, checked ONNX file with a dynamic batch axis and metadata.

Exporter choice (measured with torch 2.14.1, onnx 1.23): the TorchScript exporter (``dynamo=False``) gives
a clean single-file graph at opset 17 in ~0.03 s (BN folded, GlobalAveragePool kept). The torch.export
("dynamo") exporter, the default since torch 2.9, cannot go below opset 18 (its down-conversion to 17
fails and it silently keeps 18, which TensorRT 8.6 does not parse), writes external ``.data`` files even
for tiny models and takes ~3 s. So TorchScript is used first; dynamo is the fallback for modules the
tracer cannot export (and for a future torch that drops TorchScript), then re-saved as one file.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from torch import nn

from cidpipe.atomic import atomic_target
from cidpipe.errors import ModelError, UsageError
from cidpipe.export.metadata import base_metadata, decode_metadata, encode_metadata

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
BATCH_AXIS = "batch"
# Opset per target: 17 is parsed by TensorRT 8.6 (max 17) and 10.x, and run by onnxruntime >= 1.14.
DEFAULT_OPSET = {"onnx": 17, "trt": 17}
DYNAMO_MIN_OPSET = 18


def default_opset(target: str) -> int:
    if target not in DEFAULT_OPSET:
        raise UsageError(f"unknown export target {target!r}; choose one of {sorted(DEFAULT_OPSET)}")
    return DEFAULT_OPSET[target]


def exportable_opsets() -> tuple[int, int]:
    """(lowest, highest) ONNX opset the installed torch.onnx exports."""
    from cidpipe.export.config import MAX_OPSET, MIN_OPSET

    try:  # private, but the only place torch states its range; the recipe's bounds are the fallback
        from torch.onnx import _constants

        return int(_constants.ONNX_MIN_OPSET), int(_constants.ONNX_MAX_OPSET)
    except (ImportError, AttributeError):
        return MIN_OPSET, MAX_OPSET


def check_opset(opset: int) -> int:
    low, high = exportable_opsets()
    if not low <= opset <= high:
        raise UsageError(
            f"opset {opset} cannot be exported by torch {torch.__version__}; choose {low}..{high} "
            f"(default {DEFAULT_OPSET['onnx']})"
        )
    return opset


def export_onnx(
    module: nn.Module,
    input_shape: tuple[int, int, int],
    path: Path,
    *,
    opset: int | None = None,
    target: str = "onnx",
    dynamic_batch: bool = True,
    metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Export ``module`` (a copy, in eval mode on CPU) to ``path``; returns ``path``.

    ``input_shape`` is (C, H, W). The graph has input ``input`` [batch, C, H, W] and output ``logits``;
    with ``dynamic_batch`` the batch axis is named ``batch``. The file is checked with the full ONNX checker
    and a smoke run in onnxruntime before it replaces ``path``.
    """
    path = Path(path)
    if len(tuple(input_shape)) != 3:
        raise UsageError(f"input_shape must be (channels, height, width); got {tuple(input_shape)}")
    requested = check_opset(int(opset)) if opset is not None else None
    opset = requested if requested is not None else default_opset(target)
    model = _eval_copy(module)
    example = torch.zeros(2 if dynamic_batch else 1, *input_shape)
    with atomic_target(path) as tmp:
        exporter = _export_to(model, example, tmp, opset, dynamic_batch)
        proto = onnx.load(str(tmp), load_external_data=True)
        _remove_external_files(tmp)
        if requested is not None and _opset_of(proto) != requested:
            # The fallback exporter cannot write every opset (torch.export starts at 18 and keeps 18 when
            # conversion fails): a file of another opset than the one asked for must not be published as it.
            written = _opset_of(proto)
            raise ModelError(
                f"asked for ONNX opset {requested}, but the {exporter} exporter wrote opset {written}; "
                f"export with --opset {written} or leave the opset at its default"
            )
        props = {
            **base_metadata(),
            "input_shape": [int(d) for d in input_shape],
            "opset": _opset_of(proto),
            "target": target,
            "exporter": exporter,
            "dynamic_batch": dynamic_batch,
            **(dict(metadata) if metadata else {}),
        }
        _set_metadata(proto, encode_metadata(props))
        try:
            onnx.save_model(proto, str(tmp), save_as_external_data=False)
        except ValueError as err:  # protobuf's 2 GiB limit
            raise ModelError(f"{type(module).__name__} is too large for a single ONNX file: {err}") from err
        _check(tmp, path)
        _smoke_run(tmp, input_shape, dynamic_batch, path)
    return path


def read_onnx_metadata(path: Path) -> dict[str, Any]:
    """The artifact's ``metadata_props`` with JSON values decoded."""
    proto = load_onnx_checked(path, check=False)
    return decode_metadata({p.key: p.value for p in proto.metadata_props})


def load_onnx_checked(path: Path, *, check: bool = True) -> onnx.ModelProto:
    """Load an ONNX model; a missing file or one that is not a valid model is a one-line UsageError."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(
            f"{path} does not exist; export the model first (`cidpipe export --target onnx RUN`)"
        )
    try:
        proto = onnx.load(str(path))
        if check:
            onnx.checker.check_model(proto)
    except Exception as err:  # protobuf DecodeError, checker ValidationError, external-data errors
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UsageError(f"{path} is not an ONNX model: {reason}") from err
    if not proto.graph.node:
        raise UsageError(f"{path} is not an ONNX model: its graph has no nodes")
    return proto


def _eval_copy(module: nn.Module) -> nn.Module:
    # Export a copy so the caller's module keeps its device and train/eval mode.
    model = copy.deepcopy(module).cpu().eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def _export_to(model: nn.Module, example: torch.Tensor, tmp: Path, opset: int, dynamic_batch: bool) -> str:
    try:
        _export_torchscript(model, example, tmp, opset, dynamic_batch)
        return "torchscript"
    except Exception as ts_err:  # the tracer failed on this module: try torch.export
        try:
            _export_dynamo(model, example, tmp, max(opset, DYNAMO_MIN_OPSET), dynamic_batch)
            return "dynamo"
        except Exception as dyn_err:
            raise ModelError(
                f"cannot export {type(model).__name__} to ONNX: TorchScript exporter: {_first_line(ts_err)}; "
                f"torch.export: {_first_line(dyn_err)} (set CIDPIPE_DEBUG=1 for the traceback)"
            ) from dyn_err


def _export_torchscript(
    model: nn.Module, example: torch.Tensor, tmp: Path, opset: int, dynamic: bool
) -> None:
    axes = {INPUT_NAME: {0: BATCH_AXIS}, OUTPUT_NAME: {0: BATCH_AXIS}} if dynamic else None
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # its deprecation notice; the decision is documented above
        torch.onnx.export(
            model,
            (example,),
            str(tmp),
            dynamo=False,
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes=axes,
            do_constant_folding=True,
        )


def _export_dynamo(model: nn.Module, example: torch.Tensor, tmp: Path, opset: int, dynamic: bool) -> None:
    shapes = ({0: torch.export.Dim(BATCH_AXIS)},) if dynamic else None
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (example,),
            str(tmp),
            dynamo=True,
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_shapes=shapes,
            external_data=False,
            verbose=False,
        )


def _remove_external_files(tmp: Path) -> None:
    for extra in tmp.parent.glob(tmp.name + ".data"):
        extra.unlink()


def _opset_of(proto: onnx.ModelProto) -> int:
    return next((int(o.version) for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)


def _set_metadata(proto: onnx.ModelProto, props: Mapping[str, str]) -> None:
    existing = {p.key: p.value for p in proto.metadata_props}
    existing.update(props)
    del proto.metadata_props[:]
    onnx.helper.set_model_props(proto, existing)


def _check(tmp: Path, final: Path) -> None:
    try:
        onnx.checker.check_model(str(tmp), full_check=True)
    except Exception as err:
        raise ModelError(f"exported ONNX for {final} fails the ONNX checker: {_first_line(err)}") from err


def _smoke_run(tmp: Path, input_shape: tuple[int, int, int], dynamic: bool, final: Path) -> None:
    """One onnxruntime run per batch size: catches a batch axis that the tracer baked in as a constant."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    session = ort.InferenceSession(str(tmp), opts, providers=["CPUExecutionProvider"])
    for batch in (1, 3) if dynamic else (1,):
        x = np.zeros((batch, *input_shape), dtype=np.float32)
        try:
            (out,) = session.run([OUTPUT_NAME], {INPUT_NAME: x})
        except Exception as err:
            raise ModelError(
                f"exported ONNX for {final} does not run at batch {batch}: {_first_line(err)}; the model "
                "probably reshapes with a fixed batch size (use x.flatten(1) instead of x.view(N, -1))"
            ) from err
        if out.shape[0] != batch:
            raise ModelError(
                f"exported ONNX for {final} returns batch {out.shape[0]} for an input of {batch}"
            )


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:300] if text else type(err).__name__

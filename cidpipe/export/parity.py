"""Does an exported artifact predict what its source predicts? Real onnxruntime sessions, real numbers.

Percent units throughout: ``top1_agreement`` / ``agreement`` / ``top1_*`` are 0..100, ``drop`` is in points.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from cidpipe.errors import ParityError, UsageError
from cidpipe.export.ort_run import make_session, run_onnx, top1_percent


def torch_logits(module: nn.Module, x: np.ndarray, *, batch_size: int = 64) -> np.ndarray:
    """Logits of an eval-mode CPU copy of ``module`` (the caller's module is left as it was)."""
    model = copy.deepcopy(module).cpu().eval()
    outs = []
    with torch.no_grad():
        for start in range(0, len(x), batch_size):
            outs.append(
                model(torch.from_numpy(np.ascontiguousarray(x[start : start + batch_size], np.float32)))
            )
    return torch.cat(outs).numpy()


def check_parity(
    module: nn.Module,
    onnx_path: Path,
    x: np.ndarray,
    *,
    max_abs_diff: float,
    min_agreement: float,
    providers: Sequence[str] = ("CPUExecutionProvider",),
) -> dict[str, float | int]:
    """Compare PyTorch and ONNX logits on ``x``; raise ParityError (with the numbers) beyond tolerance."""
    if x is None or len(x) == 0:
        raise UsageError("parity check needs held-out images; got none")
    ref = torch_logits(module, x)
    got = run_onnx(make_session(onnx_path, providers=providers), x)
    if ref.shape != got.shape:
        raise ParityError(f"{onnx_path} outputs shape {got.shape} but the PyTorch model gives {ref.shape}")
    diff = np.abs(ref.astype(np.float64) - got.astype(np.float64))
    result: dict[str, float | int] = {
        "max_abs_diff": float(diff.max()),
        "mean_abs_diff": float(diff.mean()),
        "top1_agreement": float((ref.argmax(1) == got.argmax(1)).mean() * 100.0),
        "n": int(len(x)),
        # The opset of the file that was checked, read from the file: the recipe's export.opset is only
        # what was asked for (None = the default), the manifest must also say what was made.
        "opset": _file_opset(onnx_path),
    }
    problems = []
    if not result["max_abs_diff"] <= max_abs_diff:  # also catches NaN
        problems.append(f"max |logit diff| {result['max_abs_diff']:.3g} > {max_abs_diff:.3g}")
    if not result["top1_agreement"] >= min_agreement:
        problems.append(f"top-1 agreement {result['top1_agreement']:.2f}% < {min_agreement:.2f}%")
    if problems:
        raise ParityError(
            f"{onnx_path} disagrees with the PyTorch model on {result['n']} images: {'; '.join(problems)}; "
            "re-export (the module must be in eval mode) or loosen export.parity if the difference is "
            "expected"
        )
    return result


def compare_onnx(
    ref_path: Path,
    cand_path: Path,
    x: np.ndarray,
    y: np.ndarray,
    *,
    providers: Sequence[str] = ("CPUExecutionProvider",),
    threads: int | None = None,
) -> dict[str, float | int]:
    """Top-1 of a reference ONNX (FP32) and a candidate (INT8/FP16) on labelled ``x, y``; no tolerance."""
    if x is None or len(x) == 0:
        raise UsageError("comparing two ONNX files needs labelled images; got none")
    ref = run_onnx(make_session(ref_path, providers=providers, threads=threads), x)
    cand = run_onnx(make_session(cand_path, providers=providers, threads=threads), x)
    return compare_logits(ref, cand, y)


def compare_logits(ref: np.ndarray, cand: np.ndarray, y: np.ndarray) -> dict[str, float | int]:
    top1_ref, top1_cand = top1_percent(ref, y), top1_percent(cand, y)
    return {
        "top1_ref": top1_ref,
        "top1_cand": top1_cand,
        "drop": top1_ref - top1_cand,
        "agreement": float((ref.argmax(1) == cand.argmax(1)).mean() * 100.0),
        "n": int(len(y)),
    }


def _file_opset(onnx_path: Path) -> int:
    import onnx

    proto = onnx.load(str(onnx_path), load_external_data=False)
    return next((int(o.version) for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)

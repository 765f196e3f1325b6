"""The quantize stage's PTQ -> QAT decision for one INT8 variant, and what the manifest records of it."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from cidpipe.errors import ParityError

_PTQ_KEYS = ("top1_int8", "drop", "nodes_in_float", "budget_met", "budget_message", "quantizations",
             "top1_int8_exact", "kernel_diagnosis")


def ptq_then_qat(recipe, cfg, fp32, out, ptq: dict[str, Any], bundle, calib, val, inputs, work, target: str,
                 options) -> dict[str, Any]:
    """``ptq`` is what quantize_static_int8 wrote to ``out`` (budget misses returned, not raised). QAT runs
    when ``qat.enabled`` is true, or auto and PTQ missed ``max_drop``; its artifact replaces ``out``.

    The metrics keep the shipped artifact's numbers at the top (``top1_int8``, ``drop``), say which path
    made it (``path``) and keep both measurements (``ptq``, ``qat``). A budget still missed after QAT is a
    ParityError (exit 6) naming both drops.
    """
    from cidpipe.export.torch2onnx import load_onnx_checked
    from cidpipe.modelio import load_stage_model
    from cidpipe.quantize.int8 import _save_with_metadata

    qat = cfg.qat
    info = dict(ptq)
    info["ptq"] = {k: ptq[k] for k in _PTQ_KEYS if k in ptq}
    missed = ptq.get("budget_met") is False
    if qat.enabled == "auto" and not missed:
        info["path"] = "ptq"
        info["qat"] = {"ran": False, "reason": "PTQ met quantize.max_drop" if cfg.max_drop is not None
                       else "no quantize.max_drop to miss"}
        return info
    if qat.enabled == "auto" and ptq.get("kernel_diagnosis"):
        # The miss is this CPU's INT8 kernels (the exact graph holds): the fine-tune trains against the exact
        # arithmetic and cannot remove it (measured, BENCHMARKS.md: 3 of 3 MobileNetV2 seeds still missed).
        raise ParityError(f"{ptq['budget_message']}; quantization-aware fine-tuning skipped: it trains "
                          "against the exact arithmetic, which already meets the budget")
    why = "PTQ missed quantize.max_drop" if missed else "asked for (quantize.qat.enabled: true, or --qat)"
    options.log.print(f"INT8 for {target}: {why}; quantization-aware fine-tune, {_epochs(qat.epochs)} at lr "
                      f"{qat.lr:g} with distill.method {recipe.distill.method}")
    teacher, _ = load_stage_model(inputs["teacher"].dir)
    with tempfile.TemporaryDirectory(prefix="cidpipe-qat-") as tmp:
        tuned = Path(tmp) / "qat.onnx"
        result = run_fine_tune(recipe, fp32, out, tuned, teacher=teacher, bundle=bundle, calib=calib, val=val,
                               checkpoint=work.path(f"checkpoints/qat-{target}.pt"), options=options,
                               target=target)
        result["ran"] = True
        result["reason"] = why
        info.update(path="qat", qat=result, top1_int8=result["top1_int8"])
        top1_fp32 = ptq.get("top1_fp32")
        info["drop"] = top1_fp32 - result["top1_int8"] if top1_fp32 is not None and val is not None else None
        result["drop"] = info["drop"]
        if cfg.max_drop is not None and info["drop"] is not None:
            info["budget_met"] = info["drop"] <= cfg.max_drop
        info.pop("budget_message", None)
        _save_with_metadata(tuned, Path(out), load_onnx_checked(Path(fp32)), info)
    if info.get("budget_met") is False:
        note = f"; note {ptq['kernel_diagnosis']}" if ptq.get("kernel_diagnosis") else ""
        raise ParityError(
            f"INT8 drop {info['drop']:.2f} points > budget {cfg.max_drop:g} after quantization-aware "
            f"fine-tuning too (PTQ drop {ptq['drop']:.2f}, QAT {info['drop']:.2f}, {_epochs(qat.epochs)}); "
            "try more quantize.qat.epochs, another quantize.qat.lr, a larger quantize.max_float_nodes or a "
            "looser quantize.max_drop" + note
        )
    if info["drop"] is not None:
        # Against the FP32 student before the fine-tune: the epochs also train it further, so a drop below
        # zero is mostly that training, not quantization (BENCHMARKS.md's float control measures the split).
        extra = ("; below zero: the fine-tune's extra training outweighs what INT8 costs"
                 if info["drop"] < 0 else "")
        options.log.print(f"INT8 for {target} after QAT: validation drop {ptq['drop']:.2f} (PTQ) -> "
                          f"{info['drop']:.2f} points vs the FP32 student ({result['scales']} scales{extra})")
    return info


def _epochs(count: int) -> str:
    return f"{count} epoch{'s' if count != 1 else ''}"


def run_fine_tune(recipe, fp32: Path, ptq: Path, out: Path, *, teacher, bundle, calib, val, checkpoint: Path,
                  options, target: str = "cpu", simulate_quantization: bool = True) -> dict[str, Any]:
    """``fine_tune_int8`` with the recipe's settings (also the float control of benchmarks/bench_qat.py)."""
    from cidpipe.quantize.int8 import judging_optimization
    from cidpipe.quantize.qat_run import fine_tune_int8, qat_optim
    from cidpipe.stages.fit_stage import place_on_device

    qat = recipe.quantize.qat
    return fine_tune_int8(
        fp32, ptq, out, qat=qat, method=recipe.distill.method, distill_cfg=recipe.distill,
        teacher=teacher, bundle=place_on_device(bundle, recipe, options),
        optim=qat_optim(recipe.student.train, qat, val is not None),
        distill_epochs=recipe.student.train.epochs, calib_x=calib, val=val, checkpoint_path=checkpoint,
        device=options.device, batch_size=recipe.data.batch_size, eval_batch_size=recipe.data.eval_batch_size,
        augment=qat.augment and recipe.data.augment, console=options.log,
        simulate_quantization=simulate_quantization, optimization=judging_optimization(target),
    )

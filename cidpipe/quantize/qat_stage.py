"""The quantize stage's PTQ -> QAT decision for one INT8 variant, and what the manifest records of it."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from cidpipe.errors import ParityError

_PTQ_KEYS = ("top1_int8", "drop", "nodes_in_float", "budget_met", "budget_message", "quantizations")


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
    from cidpipe.quantize.qat_run import fine_tune_int8, qat_optim
    from cidpipe.stages.fit_stage import place_on_device

    qat = cfg.qat
    info = dict(ptq)
    info["ptq"] = {k: ptq[k] for k in _PTQ_KEYS if k in ptq}
    missed = ptq.get("budget_met") is False
    if qat.enabled == "auto" and not missed:
        info["path"] = "ptq"
        info["qat"] = {"ran": False, "reason": "PTQ met quantize.max_drop" if cfg.max_drop is not None
                       else "no quantize.max_drop to miss"}
        return info
    why = "PTQ missed quantize.max_drop" if missed else "quantize.qat.enabled is true"
    options.log.print(f"INT8 for {target}: {why}; quantization-aware fine-tune, {qat.epochs} epochs at lr "
                      f"{qat.lr:g} with distill.method {recipe.distill.method}")
    teacher, _ = load_stage_model(inputs["teacher"].dir)
    bundle = place_on_device(bundle, recipe, options)
    with tempfile.TemporaryDirectory(prefix="cidpipe-qat-") as tmp:
        tuned = Path(tmp) / "qat.onnx"
        result = fine_tune_int8(
            fp32, out, tuned, qat=qat, method=recipe.distill.method, distill_cfg=recipe.distill,
            teacher=teacher, bundle=bundle, optim=qat_optim(recipe.student.train, qat, val is not None),
            distill_epochs=recipe.student.train.epochs, calib_x=calib, val=val,
            checkpoint_path=work.path(f"checkpoints/qat-{target}.pt"), device=options.device,
            batch_size=recipe.data.batch_size, eval_batch_size=recipe.data.eval_batch_size,
            augment=qat.augment and recipe.data.augment, console=options.log,
        )
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
        raise ParityError(
            f"INT8 drop {info['drop']:.2f} points > budget {cfg.max_drop:g} after quantization-aware "
            f"fine-tuning too (PTQ drop {ptq['drop']:.2f}, QAT {info['drop']:.2f}, {qat.epochs} epochs); try "
            "more quantize.qat.epochs, another quantize.qat.lr, a larger quantize.max_float_nodes or a "
            "looser quantize.max_drop"
        )
    if info["drop"] is not None:
        options.log.print(f"INT8 for {target} after QAT: validation drop {ptq['drop']:.2f} (PTQ) -> "
                          f"{info['drop']:.2f} points ({result['scales']} scales)")
    return info

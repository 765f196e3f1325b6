"""``fine_tune_int8``: one quantization-aware fine-tune of a PTQ artifact, through the project's training loop
(cidpipe.training.loop.fit: the same steps, checkpoints and resume after a kill as every other fit)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

from cidpipe.export.ort_run import make_session, run_onnx, top1_percent
from cidpipe.quantize.config import QATConfig
from cidpipe.quantize.qat import (
    build_qat_distiller,
    export_candidates,
    float_weights_of,
    preprocessed_fp32,
    refit_regressor,
)
from cidpipe.quantize.qdq_graph import QDQGraph

# Used when there is no validation split to measure both on. Neither won consistently in
# benchmarks/bench_qat.py (BENCHMARKS.md, issue 16: the EMA-trained scales in 2 of 3 MobileNetV2 seeds, by
# 0.4-0.7 points; recalibration in 1, by 0.6), so without a measurement the fine-tune keeps the scales it
# was trained against.
SCALES_WITHOUT_VALIDATION = "trained"


def qat_optim(student_train, qat: QATConfig, has_val: bool):
    """The student's optimiser settings at the fine-tune's epochs and LR: cosine, fp32, one seed."""
    return student_train.model_copy(update={
        "epochs": qat.epochs, "lr": qat.lr, "schedule": "cosine", "warmup_epochs": 0, "amp": "off",
        "compile": False, "seeds": [student_train.seeds[0]], "backbone_lr_scale": 1.0, "head_lr_scale": 1.0,
        "select": student_train.select if has_val else "last",
    })


def fine_tune_int8(
    fp32_onnx: Path,
    ptq_onnx: Path,
    out_path: Path,
    *,
    qat: QATConfig,
    method: str,
    distill_cfg: Any,
    teacher: torch.nn.Module | None,
    bundle,
    optim,
    distill_epochs: int,
    calib_x: np.ndarray,
    val: tuple[np.ndarray, np.ndarray] | None,
    checkpoint_path: Path,
    device: str = "cpu",
    batch_size: int = 64,
    eval_batch_size: int = 256,
    augment: bool = True,
    console=None,
    simulate_quantization: bool = True,
    optimization: str = "all",
) -> dict[str, Any]:
    """Fine-tune ``ptq_onnx`` (its graph, its float nodes) and write the result to ``out_path`` (no
    metadata: the caller stamps it); returns what was done and measured.

    ``simulate_quantization=False`` is the experiment's control: the same fine-tune of the same graph in
    float, written to ``out_path`` as an FP32 ONNX (``top1_float`` on validation). ``optimization`` is the
    ORT level the exported candidates are judged with (int8.judging_optimization)."""
    from cidpipe.training.loop import RunSettings, fit

    ptq_proto = onnx.load(str(ptq_onnx))
    graph = QDQGraph(ptq_proto, float_weights_of(fp32_onnx))
    graph.simulate_quantization(simulate_quantization)
    finetune = build_qat_distiller(method, graph, teacher, distill_cfg, num_classes=bundle.num_classes,
                                   distill_epochs=distill_epochs, qat_epochs=qat.epochs)
    finetune.to(device)
    order = np.random.default_rng(optim.seeds[0]).permutation(len(bundle.train))[: qat.regressor_samples]
    images, _ = bundle.train.subset(np.sort(order)).to_numpy()
    finetune.eval()
    regressor_loss = refit_regressor(finetune, torch.from_numpy(images), eval_batch_size)
    run = RunSettings(device=device, seed=optim.seeds[0], batch_size=batch_size,
                      eval_batch_size=eval_batch_size,
                      base_lr=qat.lr, checkpoint_path=Path(checkpoint_path), resume=True, label="qat",
                      augment=augment)
    result = fit(finetune, bundle, optim, run, console)
    finetune.load_state_dict(result.best_state)
    finetune.cpu().eval()
    info: dict[str, Any] = {
        "epochs": qat.epochs, "lr": qat.lr, "method": method, "best_epoch": result.best_epoch,
        "val_top1_fake_quant": result.best_val_top1, "seconds": round(result.seconds, 2),
        "regressor_refit_loss": regressor_loss, "history": result.history,
        "quantized_tensors": len(graph.quantized_tensors()),
    }
    if not simulate_quantization:
        Path(out_path).write_bytes(graph.write_float_into(preprocessed_fp32(fp32_onnx)).SerializeToString())
        if val is not None:
            info["top1_float"] = top1_percent(run_onnx(make_session(out_path), val[0]), val[1])
        return info
    with tempfile.TemporaryDirectory(prefix="cidpipe-qat-") as tmp:
        candidates = export_candidates(graph, ptq_proto, calib_x, Path(tmp))
        if val is not None:
            for name, path in candidates.items():
                session = make_session(path, optimization=optimization)
                info[f"top1_{name}"] = top1_percent(run_onnx(session, val[0]), val[1])
        choice = qat.scales
        if choice == "best":
            choice = (max(candidates, key=lambda n: info[f"top1_{n}"]) if val is not None
                      else SCALES_WITHOUT_VALIDATION)
        info["scales"] = choice
        info["top1_int8"] = info.get(f"top1_{choice}")
        Path(out_path).write_bytes(candidates[choice].read_bytes())
    return info

"""Quantization-aware distillation: fine-tune the INT8 artifact's own graph (qdq_graph.py) with the run's
distillation loss against the same teacher, then write the fine-tuned integers and scales back into it.

The distiller is the run's method, built by the method registry as for the student stage, around a
student that *is* the fake-quantized graph: its pooled feature and logits are read from the middle of the
graph (the input and output of the classifier Gemm), so KD, DKD, FitNet and CID losses see exactly what
the INT8 model computes. For CID the interventional head g, the dictionary D and softmax(z/T) @ D all run
inside the graph too (the head the method calls is the graph from the feature to its output, with z cut
from the gradient as CID's p is), and D stays the distilled one: it is part of the artifact, so the
fine-tune does not rebuild it. The methods' feature regressors (CID's sample loss, FitNet's hint) are not
part of the deployable model the student stage publishes, so they are refitted in closed form on the
fine-tune's first features instead of starting from random weights (which would push large, meaningless
gradients into the backbone in the first steps).

The methods run in their post-warm-up regime (epochs are offset by the distillation's epochs): CID with
its head in use and CE on, DKD with its ramp done.
"""

from __future__ import annotations

import copy
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from torch import Tensor, nn

from cidpipe.errors import ModelError
from cidpipe.quantize.qdq_graph import QDQGraph

RIDGE = 0.1  # of the mean diagonal of the regressor's normal equations (refit_regressor)


@dataclass
class GraphHeads:
    """Where the distiller reads the graph: the pooled feature, the student's own logits (z), the tensor
    whose gradient is cut for CID's context branch, and CID's dictionary weight (None for plain heads)."""

    features: str
    logits: str
    cut: str | None = None
    dictionary: int | None = None
    feature_source: str = ""  # the float tensor ``features`` dequantizes (TensorRT graphs give each
    # consumer its own Q/DQ pair, so the classifier and the context branch read it through two pairs)


def _producer(graph: QDQGraph, name: str) -> onnx.NodeProto | None:
    while name in graph.sources and graph.sources[name][0] == "act":
        name = graph.sources[name][2]
    return next((n for n in graph.nodes if name in n.output), None)


def _classifier_input(graph: QDQGraph, logits: str) -> str:
    node = _producer(graph, logits)
    if node is not None and node.op_type == "Add":  # MatMul + Add instead of one Gemm
        node = next((_producer(graph, i) for i in node.input if _producer(graph, i) is not None), None)
    if node is None or node.op_type not in ("Gemm", "MatMul"):
        raise ModelError(f"QAT needs a linear classifier producing {logits}; found "
                         f"{node.op_type if node is not None else 'nothing'}")
    return node.input[0]


def locate_heads(graph: QDQGraph) -> GraphHeads:
    """The feature/logit tensors of a plain classifier or of CID's deployable (docs/cid-method.md)."""
    softmax = [n for n in graph.nodes if n.op_type == "Softmax"]
    if not softmax:
        logits = graph.output_name
        return _heads(graph, _classifier_input(graph, logits), logits)
    scaled = _producer(graph, softmax[0].input[0])  # Div(z, T)
    if scaled is None or scaled.op_type not in ("Div", "Mul"):
        raise ModelError("QAT found a Softmax that is not CID's softmax(z / T); cannot locate the logits z")
    logits = scaled.input[0]
    fc = _producer(graph, logits)
    matmul = next((n for n in graph.nodes if n.op_type == "MatMul" and _producer(graph, n.input[0]) is
                   softmax[0]), None)
    source = graph.sources.get(matmul.input[1]) if matmul is not None else None
    dictionary = source[1] if source is not None and source[0] == "weight" else None
    return _heads(graph, _classifier_input(graph, logits), logits, cut=fc.output[0], dictionary=dictionary)


def _heads(graph: QDQGraph, features: str, logits: str, **kwargs) -> GraphHeads:
    source = graph.sources.get(features)
    feature_source = source[2] if source is not None and source[0] == "act" else features
    return GraphHeads(features, logits, feature_source=feature_source, **kwargs)


class GraphStudent(nn.Module):
    """The feature API (forward_features / classifier / feature_dim / num_classes) over the graph."""

    def __init__(self, graph: QDQGraph, heads: GraphHeads, feature_dim: int, num_classes: int) -> None:
        super().__init__()
        self.graph, self.heads = graph, heads
        self.feature_dim, self.num_classes = int(feature_dim), int(num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.graph.run({self.graph.input_name: x}, [self.heads.logits])[self.heads.logits]

    # The feature the losses see is the float one the artifact quantizes on its way into the classifier
    # (and CID's head), where its quantizer acts: the representation losses then constrain what the
    # backbone computes, and no sample's feature is an exact zero vector (a quantized feature can be, and
    # L2-normalising it in CID's class loss gave gradients of 2e11 on a MobileNetV3).
    def forward_features(self, x: Tensor) -> Tensor:
        wanted = self.heads.feature_source
        return self.graph.run({self.graph.input_name: x}, [wanted])[wanted]

    def classifier(self, features: Tensor) -> Tensor:
        return self.graph.run({self.heads.feature_source: features}, [self.heads.logits])[self.heads.logits]


class GraphHead(nn.Module):
    """Stands in for CID's head g: takes [h ; context] as the method builds it, uses only h and runs the
    graph's own context branch (fake-quantized softmax, p @ D, concat, g) from it, z detached as in CID."""

    def __init__(self, graph: QDQGraph, heads: GraphHeads, feature_dim: int) -> None:
        super().__init__()
        self.graph, self.heads, self.feature_dim = graph, heads, int(feature_dim)

    def forward(self, joined: Tensor) -> Tensor:
        features = joined[:, : self.feature_dim]
        out = self.graph.output_name
        feeds = {self.heads.feature_source: features}
        return self.graph.run(feeds, [out], detach=[self.heads.cut])[out]


class FineTune(nn.Module):
    """The method's distiller as the training loop sees it, in its post-warm-up regime: epochs are offset
    by the distillation's, and no epoch end rebuilds method state that is part of the artifact (CID's D)."""

    ddp_find_unused_parameters = True

    def __init__(self, distiller: nn.Module, epoch_offset: int, method: str) -> None:
        super().__init__()
        self.distiller, self.epoch_offset, self.method = distiller, int(epoch_offset), method

    def forward(self, x: Tensor, y: Tensor, index: Tensor | None = None):
        return self.distiller(x, y, index)

    def predict(self, x: Tensor) -> Tensor:
        return self.distiller.predict(x)

    def on_epoch_start(self, epoch: int) -> None:
        self.distiller.on_epoch_start(epoch + self.epoch_offset)

    def on_epoch_end(self, epoch: int) -> None:
        pass  # see the class docstring

    def set_label_smoothing(self, value: float) -> None:
        self.distiller.set_label_smoothing(value)

    def param_groups(self, weight_decay: float) -> list[dict]:
        return self.distiller.param_groups(weight_decay)


def build_qat_distiller(
    method: str, graph: QDQGraph, teacher: nn.Module | None, distill_cfg: Any, *, num_classes: int,
    distill_epochs: int, qat_epochs: int,
) -> FineTune:
    from cidpipe.distill.registry import build_distiller

    heads = locate_heads(graph)
    with torch.no_grad():
        probe = torch.zeros(1, *_input_shape(graph))
        feature_dim = int(graph.run({graph.input_name: probe}, [heads.features])[heads.features].shape[1])
    student = GraphStudent(graph, heads, feature_dim, num_classes)
    if method == "cid" and heads.dictionary is None:
        # The student stage selected a warm-up epoch, so the deployable is the plain student (no g, no D):
        # fine-tune in CID's warm-up regime (KD + sample + class losses), the one it was selected under, with
        # a warm-up longer than the fine-tune so no dictionary is accumulated and g never takes over.
        warm = distill_cfg.model_copy(update={"cid": distill_cfg.cid.model_copy(
            update={"warmup_epochs": qat_epochs + 1})})
        distiller = build_distiller(method, student, teacher, warm, num_classes=num_classes,
                                    epochs=qat_epochs + 2)
        return FineTune(distiller, 0, method)
    distiller = build_distiller(method, student, teacher, distill_cfg, num_classes=num_classes,
                                epochs=distill_epochs + qat_epochs)
    if heads.dictionary is not None:
        dictionary = graph.weights[heads.dictionary]
        dictionary.requires_grad_(False)  # D is the distilled class-mean statistic, kept as it is
        if hasattr(distiller, "dictionary"):
            distiller.head = GraphHead(graph, heads, feature_dim)
            distiller.dictionary.copy_(dictionary.detach())
            distiller.dictionary_ready.fill_(True)
    return FineTune(distiller, distill_epochs, method)


def _input_shape(graph: QDQGraph) -> tuple[int, ...]:
    return graph.input_shape


@torch.no_grad()
def refit_regressor(finetune: FineTune, images: Tensor, batch_size: int) -> float | None:
    """Least-squares fit of the method's regressor (student feature -> teacher feature); CID's sample loss
    normalises by |h_t|^2, so its rows are weighted by 1 / |h_t|^2. Returns the fitted loss, or None."""
    distiller = finetune.distiller
    regressor = getattr(distiller, "regressor", None)
    if not isinstance(regressor, nn.Linear) or distiller.teacher is None:
        return None
    device = regressor.weight.device
    feats, targets = [], []
    for start in range(0, len(images), batch_size):
        x = images[start : start + batch_size].to(device)
        feats.append(distiller.student.forward_features(x).float())
        targets.append(distiller.teacher.forward_features(x).float())
    h, t = torch.cat(feats), torch.cat(targets)
    if finetune.method == "cid":
        weight = 1.0 / t.pow(2).sum(1).clamp_min(1e-12)
    else:
        weight = torch.ones(len(t), device=device)
    design = torch.cat([h, torch.ones(len(h), 1, device=device)], 1) * weight.sqrt()[:, None]
    # Ridge scaled to the features: features have dead and near-constant dimensions, and a weakly
    # regularised fit puts large weights there, so the first small moves of the backbone along them blow the
    # sample loss up (measured: 7e10 gradients on the first MobileNetV3 step with a fixed 1e-4 ridge; with
    # 1e-2 x the mean diagonal a weak MobileNetV2's sample loss went 0.2 -> 2915 in two steps and the
    # fine-tune ended in NaN; with 0.1 it stayed at 0.24-0.29, at a fitted loss of 0.25 instead of 0.20).
    gram = design.T @ design
    ridge = RIDGE * gram.diagonal().mean() * torch.eye(design.shape[1], device=device)
    solution = torch.linalg.solve(gram + ridge, design.T @ (t * weight.sqrt()[:, None]))
    regressor.weight.copy_(solution[:-1].T)
    regressor.bias.copy_(solution[-1])
    residual = (regressor(h) - t).pow(2).sum(1) * weight
    return float(residual.mean())


@torch.no_grad()
def recalibrate(graph: QDQGraph, calib_x: np.ndarray, batch_size: int = 64) -> dict[str, Tensor]:
    """Set every activation range to the MinMax of the fine-tuned float graph over the calibration images;
    returns the previous (trained) quantizer state so the caller can restore it."""
    saved = copy.deepcopy(graph.quantizers.state_dict())
    device = next(graph.parameters()).device
    was_training = graph.training
    graph.eval()
    graph.set_quantizer_mode("calibrate")
    try:
        for start in range(0, len(calib_x), batch_size):
            graph(torch.from_numpy(calib_x[start : start + batch_size]).to(device))
    finally:
        graph.set_quantizer_mode("fake")
        graph.train(was_training)
    for q in graph.quantizers:
        q.adopt_calibration()
    return saved


def export_candidates(graph: QDQGraph, ptq_proto: onnx.ModelProto, calib_x: np.ndarray,
                      work: Path) -> dict[str, Path]:
    """The fine-tuned graph with its trained scales and with recalibrated ones, as ONNX files in ``work``."""
    out: dict[str, Path] = {}
    trained = graph.write_into(ptq_proto)
    out["trained"] = work / "qat_trained.onnx"
    onnx.save_model(trained, str(out["trained"]))
    saved = recalibrate(graph, calib_x)
    out["recalibrated"] = work / "qat_recalibrated.onnx"
    onnx.save_model(graph.write_into(ptq_proto), str(out["recalibrated"]))
    graph.quantizers.load_state_dict(saved)
    return out


def preprocessed_fp32(fp32_onnx: Path) -> onnx.ModelProto:
    """The FP32 graph as the quantizer saw it: ORT's pre-processing, BatchNorm folded."""
    from cidpipe.quantize.int8 import _preprocess

    with tempfile.TemporaryDirectory(prefix="cidpipe-qat-") as tmp:
        return onnx.load(str(_preprocess(Path(fp32_onnx), Path(tmp) / "pre.onnx")))


def float_weights_of(fp32_onnx: Path) -> dict[str, np.ndarray]:
    """Initializers of the pre-processed FP32 graph: the latent float weights the fine-tune starts from,
    finer than their int8 copies."""
    from onnx import numpy_helper

    return {i.name: numpy_helper.to_array(i) for i in preprocessed_fp32(fp32_onnx).graph.initializer}

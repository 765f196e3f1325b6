"""The QAT loss is the run's distillation method on the fake-quantized graph (quantize/qat.py)."""

from __future__ import annotations

import copy

import numpy as np
import onnx
import pytest
import torch

from cidpipe.distill.config import DistillConfig
from cidpipe.quantize.config import QuantizeConfig
from cidpipe.quantize.int8 import quantize_static_int8
from cidpipe.quantize.qat import build_qat_distiller, float_weights_of, locate_heads, refit_regressor
from cidpipe.quantize.qdq_graph import QDQGraph


@pytest.fixture(scope="module")
def teacher(trained_net):
    net = copy.deepcopy(trained_net).eval()
    net.feature_dim = net.classifier.in_features  # the feature API the CID/FitNet losses read
    net.num_classes = net.classifier.out_features
    return net


def _graph(onnx_path, digits, tmp_path):
    out = tmp_path / "int8.onnx"
    quantize_static_int8(onnx_path, out, digits[0][:128], QuantizeConfig())
    return QDQGraph(onnx.load(str(out)), float_weights_of(onnx_path))


def test_cid_qat_loss_has_every_cid_term_and_trains_the_graph(cid_onnx, digits, teacher, tmp_path):
    graph = _graph(cid_onnx, digits, tmp_path)
    finetune = build_qat_distiller("cid", graph, teacher, DistillConfig(), num_classes=10,
                                   distill_epochs=30, qat_epochs=2)
    x = torch.from_numpy(digits[0][:64])
    y = torch.from_numpy(digits[1][:64])
    assert refit_regressor(finetune, x, 32) is not None
    finetune.on_epoch_start(0)  # epoch 30 for CID: head in use, CE on
    finetune.train()
    out = finetune(x, y)
    assert set(out.parts) == {"kd", "sample", "class", "ce"}
    cfg = DistillConfig().cid
    expected = (cfg.kd_weight * (out.parts["ce"] + out.parts["kd"]) + cfg.sample_weight * out.parts["sample"]
                + cfg.class_weight * out.parts["class"])
    torch.testing.assert_close(out.loss, expected)
    out.loss.backward()
    heads = locate_heads(graph)
    dictionary = graph.weights[heads.dictionary]
    assert dictionary.grad is None and not dictionary.requires_grad  # CID keeps its distilled D
    trained = [w for w in graph.weights if w.requires_grad]
    assert trained and all(w.grad is not None for w in trained)
    # The logits the method predicts with are the whole INT8 graph's output (CID head included).
    finetune.eval()
    with torch.no_grad():
        torch.testing.assert_close(finetune.predict(x), graph(x))


def test_plain_student_qat_uses_kd_against_the_teacher(fp32_onnx, digits, teacher, tmp_path):
    graph = _graph(fp32_onnx, digits, tmp_path)
    finetune = build_qat_distiller("kd", graph, teacher, DistillConfig(), num_classes=10,
                                   distill_epochs=5, qat_epochs=1)
    x = torch.from_numpy(digits[0][:32])
    y = torch.from_numpy(digits[1][:32])
    finetune.on_epoch_start(0)
    finetune.train()
    out = finetune(x, y)
    assert set(out.parts) == {"ce", "kd"} and out.parts["kd"].item() > 0
    cfg = DistillConfig().kd
    torch.testing.assert_close(out.loss, cfg.ce_weight * out.parts["ce"] + cfg.kd_weight * out.parts["kd"])
    assert np.isfinite(out.loss.item())


def test_cid_run_whose_deployable_is_the_plain_student_fine_tunes_in_warm_up(fp32_onnx, digits, teacher,
                                                                             tmp_path):
    """A CID student selected in a warm-up epoch exports without g and D: QAT keeps that regime (KD, sample
    and class losses; no CE through g, no dictionary) for every fine-tune epoch."""
    graph = _graph(fp32_onnx, digits, tmp_path)
    finetune = build_qat_distiller("cid", graph, teacher, DistillConfig(), num_classes=10,
                                   distill_epochs=30, qat_epochs=3)
    x, y = torch.from_numpy(digits[0][:64]), torch.from_numpy(digits[1][:64])
    refit_regressor(finetune, x, 32)
    finetune.train()
    for epoch in range(3):
        finetune.on_epoch_start(epoch)
        out = finetune(x, y)
        assert set(out.parts) == {"kd", "sample", "class"}, epoch
        assert not finetune.distiller.accumulating() and not finetune.distiller.head_in_use()
    finetune.eval()
    with torch.no_grad():
        torch.testing.assert_close(finetune.predict(x), graph(x))

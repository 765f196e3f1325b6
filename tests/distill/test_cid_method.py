"""CID's schedule, gradient routing, dictionary life cycle, resume state and deployable."""

from __future__ import annotations

import math

import numpy as np
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from distill_tiny_models import make_batches, make_pair

from cidpipe.distill import build_deployable, build_distiller
from cidpipe.distill.losses import class_representation_loss, kd_loss, sample_representation_loss
from cidpipe.errors import ConfigError, UsageError

K = 6
EPOCHS = 5


def _cid(distill_cfg, seed: int = 0, **cid_overrides):
    for key, value in cid_overrides.items():
        setattr(distill_cfg.cid, key, value)
    student, teacher = make_pair(num_classes=K, seed=seed)
    return build_distiller("cid", student, teacher, distill_cfg, num_classes=K, epochs=EPOCHS)


def _loop_dictionary(distiller, batches) -> torch.Tensor:
    """D[c] = sum w h / sum w with a per-sample loop over (train-mode) student features."""
    temperature = distiller.cfg.temperature
    feature_sum = torch.zeros(K, distiller.feature_dim, dtype=torch.float64)
    weight_sum = [0.0] * K
    with torch.no_grad():
        for x, y in batches:
            features = distiller.student.forward_features(x).double()
            teacher_probs = F.softmax(distiller.teacher(x) / temperature, dim=1)
            for i, label in enumerate(y.tolist()):
                weight = float(teacher_probs[i, label])
                feature_sum[label] += weight * features[i]
                weight_sum[label] += weight
    rows = [feature_sum[c] / weight_sum[c] if weight_sum[c] > 0 else feature_sum[c] for c in range(K)]
    return torch.stack(rows).float()


def _run_epoch(distiller, epoch, batches, optimizer=None):
    distiller.train()
    distiller.on_epoch_start(epoch)
    outputs = []
    for x, y in batches:
        out = distiller(x, y)
        if optimizer is not None:
            optimizer.zero_grad()
            out.loss.backward()
            optimizer.step()
        outputs.append(out)
    distiller.on_epoch_end(epoch)
    return outputs


def test_warmup_has_no_ce_and_the_loss_is_the_weighted_sum(distill_cfg):
    distiller = _cid(distill_cfg, sample_weight=3.0, class_weight=0.5, kd_weight=2.0)
    x, y = make_batches(1, 16, K)[0]
    distiller.train()
    distiller.on_epoch_start(0)
    out = distiller(x, y)
    assert set(out.parts) == {"kd", "sample", "class"}
    expected = 2.0 * out.parts["kd"] + 3.0 * out.parts["sample"] + 0.5 * out.parts["class"]
    torch.testing.assert_close(out.loss, expected)
    torch.testing.assert_close(out.logits, distiller.student(x))  # fc_s predicts during warm-up
    # The parts are the pure losses of this batch's features.
    h_s, h_t = distiller.student.forward_features(x), distiller.teacher.forward_features(x)
    torch.testing.assert_close(out.parts["kd"], kd_loss(distiller.student(x), distiller.teacher(x), 4.0))
    torch.testing.assert_close(out.parts["sample"], sample_representation_loss(distiller.regressor(h_s), h_t))
    torch.testing.assert_close(out.parts["class"], class_representation_loss(h_s, h_t, y, K))


def test_after_warmup_ce_on_g_joins_the_loss(distill_cfg):
    distiller = _cid(distill_cfg, sample_weight=3.0, class_weight=0.5, kd_weight=2.0)
    batches = make_batches(2, 16, K)
    _run_epoch(distiller, 0, batches)
    _run_epoch(distiller, 1, batches)
    distiller.on_epoch_start(2)
    x, y = batches[0]
    out = distiller(x, y)
    assert set(out.parts) == {"kd", "sample", "class", "ce"}
    parts = out.parts
    expected = 2.0 * (parts["ce"] + parts["kd"]) + 3.0 * parts["sample"] + 0.5 * parts["class"]
    torch.testing.assert_close(out.loss, expected)
    # CE is taken on g([h ; softmax(z/T) @ D]), feature first.
    h = distiller.student.forward_features(x)
    context = F.softmax(distiller.student.classifier(h) / 4.0, dim=1) @ distiller.dictionary
    g_logits = distiller.head(torch.cat([h, context], dim=1))
    torch.testing.assert_close(out.logits, g_logits)
    torch.testing.assert_close(parts["ce"], F.cross_entropy(g_logits, y))


def test_gradients_flow_only_where_the_method_says(distill_cfg):
    distiller = _cid(distill_cfg)
    batches = make_batches(2, 16, K)
    _run_epoch(distiller, 0, batches)
    _run_epoch(distiller, 1, batches)
    distiller.on_epoch_start(2)
    x, y = batches[0]
    out = distiller(x, y)
    fc_s = distiller.student.classifier
    backbone_weight = distiller.student.body[0].weight
    ce_grads = torch.autograd.grad(
        out.parts["ce"], [fc_s.weight, fc_s.bias, backbone_weight, distiller.head.weight],
        retain_graph=True, allow_unused=True,
    )
    assert ce_grads[0] is None and ce_grads[1] is None  # fc_s learns from KD only
    assert ce_grads[2] is not None and ce_grads[2].abs().sum() > 0  # CE reaches h through g
    assert ce_grads[3].abs().sum() > 0
    (kd_grad,) = torch.autograd.grad(out.parts["kd"], [fc_s.weight], retain_graph=True)
    assert kd_grad.abs().sum() > 0
    out.loss.backward()
    assert all(p.grad is None and not p.requires_grad for p in distiller.teacher.parameters())
    assert distiller.dictionary.grad is None


def test_head_gets_no_gradient_during_warmup(distill_cfg):
    distiller = _cid(distill_cfg)
    distiller.train()
    distiller.on_epoch_start(0)
    x, y = make_batches(1, 16, K)[0]
    distiller(x, y).loss.backward()
    assert distiller.head.weight.grad is None
    assert distiller.regressor.weight.grad.abs().sum() > 0


def test_param_groups_exempt_only_the_regressor_and_never_hold_the_teacher(distill_cfg):
    distiller = _cid(distill_cfg)
    groups = distiller.param_groups(5e-4)
    by_name = {g["name"]: g for g in groups}
    assert by_name["no_decay"]["weight_decay"] == 0.0
    assert {id(p) for p in by_name["no_decay"]["params"]} == {id(p) for p in distiller.regressor.parameters()}
    assert by_name["decay"]["weight_decay"] == 5e-4
    grouped = [id(p) for g in groups for p in g["params"]]
    assert len(grouped) == len(set(grouped)) == len(list(distiller.parameters()))
    assert not {id(p) for p in distiller.teacher.parameters()} & set(grouped)
    torch.optim.SGD(groups, lr=0.1, momentum=0.9)  # the groups are accepted as they are


def test_dictionary_is_built_in_the_last_warmup_epoch_and_used_from_the_next(distill_cfg):
    distiller = _cid(distill_cfg)
    batches = make_batches(3, 16, K)
    _run_epoch(distiller, 0, batches)  # first warm-up epoch: nothing accumulated
    assert not bool(distiller.dictionary_ready)
    distiller.train()
    distiller.on_epoch_start(1)
    expected = _loop_dictionary(distiller, batches)  # no optimizer: the features stay fixed
    for x, y in batches:
        distiller(x, y)
    distiller.on_epoch_end(1)
    torch.testing.assert_close(distiller.next_dictionary, expected, atol=1e-5, rtol=0)
    assert distiller.dictionary.abs().sum() == 0  # not in use before the next epoch starts
    assert distiller.next_dictionary[K - 1].abs().sum() == 0  # the unseen class stays 0
    distiller.on_epoch_start(2)
    torch.testing.assert_close(distiller.dictionary, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("momentum", [0.0, 0.3])
def test_dictionary_momentum_mixes_with_the_dictionary_in_use(distill_cfg, momentum):
    distiller = _cid(distill_cfg, dictionary_momentum=momentum)
    first, second = make_batches(2, 16, K, seed=1), make_batches(2, 16, K, seed=2)
    # Epoch 2 sees no sample of class 0: its row shows the literal momentum rule on unseen classes.
    second = [(x[y != 0], y[y != 0]) for x, y in second]
    _run_epoch(distiller, 0, first)
    _run_epoch(distiller, 1, first)
    distiller.on_epoch_start(2)
    in_use = distiller.dictionary.clone()
    distiller.train()
    fresh = _loop_dictionary(distiller, second)
    for x, y in second:
        distiller(x, y)
    distiller.on_epoch_end(2)
    expected = momentum * in_use + (1 - momentum) * fresh
    torch.testing.assert_close(distiller.next_dictionary, expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(distiller.next_dictionary[0], momentum * in_use[0], atol=1e-6, rtol=0)
    assert in_use[0].abs().sum() > 0
    torch.testing.assert_close(distiller.dictionary, in_use, atol=0, rtol=0)  # the last epoch's D remains


def test_state_dict_round_trip_restores_every_piece_of_cid_state_exactly(distill_cfg):
    distiller = _cid(distill_cfg, dictionary_momentum=0.5)
    optimizer = torch.optim.SGD(distiller.param_groups(5e-4), lr=0.05)
    batches = make_batches(2, 16, K)
    for epoch in range(3):
        _run_epoch(distiller, epoch, batches, optimizer)
    distiller.on_epoch_start(3)
    distiller(*batches[0])  # mid-epoch: the accumulators hold something
    state = distiller.state_dict()
    assert not any(key.startswith("teacher") for key in state)  # the teacher is not stored twice
    restored = _cid(distill_cfg, seed=1)
    restored.teacher.load_state_dict(distiller.teacher.state_dict())
    restored.load_state_dict(state)
    for key, value in state.items():
        assert torch.equal(restored.state_dict()[key], value), key
    assert restored.dictionary_weight_sum.sum() > 0
    assert restored.head_in_use() and restored._epoch == 3
    distiller.eval()
    restored.eval()
    x = batches[1][0]
    torch.testing.assert_close(restored.predict(x), distiller.predict(x), atol=0, rtol=0)


def test_post_warmup_epoch_without_a_dictionary_is_refused(distill_cfg):
    distiller = _cid(distill_cfg)
    with pytest.raises(UsageError, match="dictionary"):
        distiller.on_epoch_start(2)


def test_too_few_epochs_for_the_warmup_is_a_config_error(distill_cfg):
    student, teacher = make_pair(num_classes=K)
    with pytest.raises(ConfigError, match="warmup_epochs"):
        build_distiller("cid", student, teacher, distill_cfg, num_classes=K, epochs=2)


def _trained_past_warmup(distill_cfg):
    distiller = _cid(distill_cfg, dictionary_momentum=0.2)
    optimizer = torch.optim.SGD(distiller.param_groups(5e-4), lr=0.05, momentum=0.9)
    batches = make_batches(2, 16, K)
    for epoch in range(4):
        _run_epoch(distiller, epoch, batches, optimizer)
    return distiller, batches


def test_predict_and_the_deployable_use_the_dictionary_the_last_epoch_trained_with(distill_cfg):
    distiller, batches = _trained_past_warmup(distill_cfg)
    assert bool(distiller.next_dictionary_pending)
    assert not torch.equal(distiller.next_dictionary, distiller.dictionary)
    distiller.eval()
    x = batches[0][0]
    with torch.no_grad():
        predicted = distiller.predict(x)
        deployable = distiller.deployable().eval()
        torch.testing.assert_close(deployable(x), predicted, atol=1e-6, rtol=0)
        assert torch.equal(deployable.dictionary, distiller.dictionary)
        # Rebuilt from the spec around a fresh student, then filled from the state dict.
        spec = distiller.deployment_spec()
        assert spec == {"head": "cid", "temperature": 4.0, "feature_dim": 12, "num_classes": K}
        fresh_student, _ = make_pair(num_classes=K, seed=3)
        rebuilt = build_deployable(fresh_student, spec)
        rebuilt.load_state_dict(deployable.state_dict())
        torch.testing.assert_close(rebuilt.eval()(x), predicted, atol=1e-6, rtol=0)
        # It differs from the backbone's own (KD-only) classifier: exporting the backbone is wrong.
        assert not torch.allclose(distiller.student(x), predicted, atol=1e-3)


def test_warmup_deployable_is_the_plain_student(distill_cfg):
    distiller = _cid(distill_cfg)
    distiller.on_epoch_start(1)
    assert distiller.deployable() is distiller.student
    assert distiller.deployment_spec() == {"head": "plain"}


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("dynamo", [False, True], ids=["torchscript-exporter", "dynamo-exporter"])
def test_the_cid_deployable_exports_to_onnx_and_runs_in_onnxruntime(distill_cfg, tmp_path, dynamo):
    distiller, batches = _trained_past_warmup(distill_cfg)
    deployable = distiller.deployable().eval()
    x = batches[0][0][:4]
    path = tmp_path / "cid.onnx"
    if dynamo:
        batch_dim = {"x": {0: torch.export.Dim("batch")}}
        torch.onnx.export(
            deployable, (x,), str(path), input_names=["input"], output_names=["logits"],
            dynamo=True, dynamic_shapes=batch_dim, verbose=False,
        )
    else:
        torch.onnx.export(
            deployable, (x,), str(path), input_names=["input"], output_names=["logits"],
            dynamo=False, dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
        )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x_other = batches[1][0][:7]  # a different batch size than the export's
    for batch in (x, x_other):
        (onnx_logits,) = session.run(None, {"input": batch.numpy()})
        with torch.no_grad():
            expected = deployable(batch).numpy()
        np.testing.assert_allclose(onnx_logits, expected, atol=1e-4, rtol=0)
    assert math.isfinite(float(np.abs(onnx_logits).sum()))


def test_a_cid_step_under_autocast_keeps_losses_and_dictionary_in_float32(distill_cfg):
    """bfloat16 autocast on CPU stands in for the trainer's CUDA AMP: same dtype rules in the losses."""
    distiller = _cid(distill_cfg)
    batches = make_batches(1, 16, K)
    distiller.train()
    for epoch in range(3):
        distiller.on_epoch_start(epoch)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = distiller(*batches[0])
        out.loss.backward()
        distiller.on_epoch_end(epoch)
    assert "ce" in out.parts and torch.isfinite(out.loss)
    assert all(part.dtype == torch.float32 for part in out.parts.values())
    assert distiller.dictionary.dtype == torch.float32 and distiller.dictionary.abs().sum() > 0

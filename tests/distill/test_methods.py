"""Every registered method honours the Distiller contract; the registry rejects bad requests clearly."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from distill_tiny_models import TinyClassifier, make_batches, make_pair
from torch import nn

from cidpipe.distill import Distiller, StepOutput, build_deployable, build_distiller, list_methods
from cidpipe.distill.losses import dkd_loss, hint_loss, kd_loss
from cidpipe.errors import ConfigError, ModelError, UsageError

K = 6


def _build(method, distill_cfg, epochs=5, with_teacher=True):
    student, teacher = make_pair(num_classes=K)
    return build_distiller(
        method, student, teacher if with_teacher else None, distill_cfg, num_classes=K, epochs=epochs
    )


def test_all_five_methods_are_registered():
    assert list_methods() == ["ce", "cid", "dkd", "fitnet", "kd"]


@pytest.mark.parametrize("method", list_methods())
def test_a_training_step_honours_the_contract(method, distill_cfg):
    distiller = _build(method, distill_cfg)
    assert isinstance(distiller, Distiller)
    optimizer = torch.optim.SGD(distiller.param_groups(5e-4), lr=0.05)
    x, y = make_batches(1, 12, K)[0]
    distiller.train()
    distiller.on_epoch_start(0)
    assert distiller.training and (distiller.teacher is None or not distiller.teacher.training)
    before = [p.detach().clone() for p in distiller.student.parameters()]
    out = distiller(x, y)
    assert isinstance(out, StepOutput) and out.loss.dim() == 0 and torch.isfinite(out.loss)
    assert out.logits.shape == (12, K) and out.parts
    optimizer.zero_grad()
    out.loss.backward()
    optimizer.step()
    distiller.on_epoch_end(0)
    assert any(not torch.equal(b, p) for b, p in zip(before, distiller.student.parameters(), strict=True))
    assert all(p.grad is None for p in distiller.teacher.parameters())
    assert not any(key.startswith("teacher") for key in distiller.state_dict())
    assert "current_epoch" in distiller.state_dict()
    distiller.eval()
    assert distiller.predict(x).shape == (12, K)
    assert isinstance(distiller.deployment_spec(), dict)


def test_ce_needs_no_teacher_and_predicts_with_the_student(distill_cfg):
    distiller = _build("ce", distill_cfg, with_teacher=False)
    x, y = make_batches(1, 8, K)[0]
    out = distiller(x, y)
    torch.testing.assert_close(out.loss, F.cross_entropy(distiller.student(x), y))
    assert distiller.deployable() is distiller.student
    assert build_deployable(distiller.student, distiller.deployment_spec()) is distiller.student


def test_kd_fitnet_and_dkd_combine_their_parts_with_the_configured_weights(distill_cfg):
    x, y = make_batches(1, 12, K)[0]
    kd = _build("kd", distill_cfg)
    out = kd(x, y)
    torch.testing.assert_close(out.parts["kd"], kd_loss(kd.student(x), kd.teacher(x), 4.0))
    torch.testing.assert_close(out.loss, 0.1 * out.parts["ce"] + 0.9 * out.parts["kd"])

    fitnet = _build("fitnet", distill_cfg)
    out = fitnet(x, y)
    hint = hint_loss(fitnet.regressor(fitnet.student.forward_features(x)), fitnet.teacher.forward_features(x))
    torch.testing.assert_close(out.parts["hint"], hint)
    torch.testing.assert_close(out.loss, out.parts["ce"] + distill_cfg.fitnet.hint_weight * hint)

    dkd = _build("dkd", distill_cfg)
    expected_dkd = dkd_loss(dkd.student(x), dkd.teacher(x), y, 1.0, 8.0, 4.0)
    for epoch, ramp in [(0, 0.25), (2, 0.75), (3, 1.0), (9, 1.0)]:  # warmup_epochs = 4
        dkd.on_epoch_start(epoch)
        out = dkd(x, y)
        torch.testing.assert_close(out.parts["dkd"], expected_dkd)
        torch.testing.assert_close(out.loss, out.parts["ce"] + ramp * expected_dkd)


def test_the_teacher_stays_in_eval_mode_and_moves_with_the_distiller(distill_cfg):
    distiller = _build("kd", distill_cfg)
    distiller.train(True)
    assert distiller.student.training and not distiller.teacher.training
    distiller.double()
    assert all(p.dtype == torch.float64 for p in distiller.teacher.parameters())
    x, y = make_batches(1, 4, K)[0]
    assert torch.isfinite(distiller(x.double(), y).loss)


def test_the_epoch_counter_survives_a_state_dict_round_trip(distill_cfg):
    dkd = _build("dkd", distill_cfg)
    dkd.on_epoch_start(2)
    restored = _build("dkd", distill_cfg)
    restored.load_state_dict(dkd.state_dict())
    assert restored.ramp() == dkd.ramp() == 0.75


def test_unknown_method_is_a_config_error_with_a_near_miss(distill_cfg):
    with pytest.raises(ConfigError, match="did you mean 'kd'"):
        _build("kdd", distill_cfg)


@pytest.mark.parametrize("method", [m for m in list_methods() if m != "ce"])
def test_methods_needing_a_teacher_refuse_none(method, distill_cfg):
    with pytest.raises(UsageError, match="needs a teacher"):
        _build(method, distill_cfg, with_teacher=False)


def test_a_student_without_the_feature_api_is_a_model_error(distill_cfg):
    class Bare(nn.Module):
        num_classes = K

        def forward(self, x):
            return x

    with pytest.raises(ModelError, match="student model Bare exposes no feature_dim"):
        build_distiller("kd", Bare(), TinyClassifier(4, K), distill_cfg, num_classes=K, epochs=5)


def test_a_teacher_for_other_classes_is_a_model_error(distill_cfg):
    with pytest.raises(ModelError, match="predicts 10 classes"):
        build_distiller(
            "cid", TinyClassifier(4, K), TinyClassifier(4, 10), distill_cfg, num_classes=K, epochs=5
        )


def test_a_bad_deployment_spec_is_a_model_error():
    student = TinyClassifier(12, K)
    with pytest.raises(ModelError, match="unknown deployable head"):
        build_deployable(student, {"head": "mystery"})
    with pytest.raises(ModelError, match="feature_dim 16"):
        build_deployable(student, {"head": "cid", "temperature": 4.0, "feature_dim": 16, "num_classes": K})
    with pytest.raises(ModelError, match="lacks a valid"):
        build_deployable(student, {"head": "cid", "feature_dim": 12})


def test_cid_runs_on_the_model_zoo_and_its_deployable_matches_predict(distill_cfg):
    """The real zoo's feature API (cidpipe.models), not only the test's tiny stand-in."""
    from cidpipe.models.registry import build_model

    torch.manual_seed(0)
    student, teacher = build_model("tinycnn", K), build_model("resnet8", K)
    distiller = build_distiller("cid", student, teacher, distill_cfg, num_classes=K, epochs=4)
    optimizer = torch.optim.SGD(distiller.param_groups(5e-4), lr=0.05)
    x, y = make_batches(1, 8, K, size=16)[0]
    distiller.train()
    for epoch in range(3):
        distiller.on_epoch_start(epoch)
        out = distiller(x, y)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        distiller.on_epoch_end(epoch)
    assert "ce" in out.parts
    distiller.eval()
    with torch.no_grad():
        torch.testing.assert_close(distiller.deployable().eval()(x), distiller.predict(x), atol=1e-6, rtol=0)

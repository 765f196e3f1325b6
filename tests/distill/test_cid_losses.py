"""Golden tests: every vectorised loss equals a plain per-sample / per-class loop written here.

The loops follow docs/cid-method.md literally (like the reference implementation does, with Python
scalars), in float64, on batches with repeated labels, singleton classes and absent classes.
"""

from __future__ import annotations

import math

import pytest
import torch

from cidpipe.distill.losses import (
    class_representation_loss,
    dictionary_sums,
    dkd_loss,
    hint_loss,
    kd_loss,
    sample_representation_loss,
    true_class_probability,
)

NUM_CLASSES = 10
# 5 x class 0, 3 x class 1, singletons 2 and 5, 2 x class 3, 4 x class 7; classes 4, 6, 8, 9 absent.
LABELS = [0] * 5 + [1] * 3 + [2] + [3] * 2 + [5] + [7] * 4


def _batch(seed: int, d_s: int = 7, d_t: int = 11):
    generator = torch.Generator().manual_seed(seed)
    labels = torch.tensor(LABELS)[torch.randperm(len(LABELS), generator=generator)]
    batch = len(LABELS)
    student_feat = torch.randn(batch, d_s, generator=generator).relu()
    teacher_feat = torch.randn(batch, d_t, generator=generator).relu() + 0.01
    student_logits = torch.randn(batch, NUM_CLASSES, generator=generator) * 3
    teacher_logits = torch.randn(batch, NUM_CLASSES, generator=generator) * 3
    return labels, student_feat, teacher_feat, student_logits, teacher_logits


def _softmax(row: list[float], temperature: float) -> list[float]:
    scaled = [v / temperature for v in row]
    top = max(scaled)
    exps = [math.exp(v - top) for v in scaled]
    total = sum(exps)
    return [e / total for e in exps]


def _kl(p: list[float], q: list[float]) -> float:
    return sum(pi * (math.log(pi) - math.log(qi)) for pi, qi in zip(p, q, strict=True) if pi > 0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kd_loss_equals_the_hand_written_kl(seed):
    _, _, _, student_logits, teacher_logits = _batch(seed)
    temperature = 4.0
    total = 0.0
    for s_row, t_row in zip(student_logits.tolist(), teacher_logits.tolist(), strict=True):
        total += _kl(_softmax(t_row, temperature), _softmax(s_row, temperature))
    expected = temperature**2 * total / len(LABELS)
    assert kd_loss(student_logits, teacher_logits, temperature).item() == pytest.approx(expected, abs=1e-5)
    # The same as torch's KLDiv on probabilities (the reference's formulation), sum / B * T^2.
    by_kldiv = torch.nn.KLDivLoss(reduction="sum")(
        torch.log_softmax(student_logits / temperature, 1), torch.softmax(teacher_logits / temperature, 1)
    ) * temperature**2 / len(LABELS)
    got = kd_loss(student_logits, teacher_logits, temperature).item()
    assert got == pytest.approx(by_kldiv.item(), abs=1e-5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sample_representation_loss_equals_the_loop(seed):
    _, _, teacher_feat, _, _ = _batch(seed)
    regressed = torch.randn(teacher_feat.shape, generator=torch.Generator().manual_seed(seed + 10))
    total = 0.0
    for r_row, t_row in zip(regressed.double().tolist(), teacher_feat.double().tolist(), strict=True):
        error = sum((r - t) ** 2 for r, t in zip(r_row, t_row, strict=True))
        total += error / sum(t * t for t in t_row)
    expected = total / len(LABELS)
    assert sample_representation_loss(regressed, teacher_feat).item() == pytest.approx(expected, rel=1e-5)


def test_sample_representation_loss_survives_an_all_zero_teacher_feature():
    teacher_feat = torch.zeros(3, 4)
    loss = sample_representation_loss(torch.ones(3, 4), teacher_feat)
    assert torch.isfinite(loss)


def _class_loss_loop(student_feat, teacher_feat, labels) -> float:
    losses = []
    for k in sorted(set(labels.tolist())):
        index = [i for i, label in enumerate(labels.tolist()) if label == k]
        n = len(index)
        if n < 2:
            continue
        s = student_feat[index].double()
        t = teacher_feat[index].double()
        s = s / s.norm(dim=1, keepdim=True).clamp_min(1e-12)
        t = t / t.norm(dim=1, keepdim=True).clamp_min(1e-12)
        gram_s = s @ s.T
        gram_t = t @ t.T
        losses.append(((gram_t - gram_s) ** 2).sum().item() / n**2)
    return sum(losses) / len(losses) if losses else 0.0


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_class_representation_loss_equals_the_per_class_loop(seed):
    labels, student_feat, teacher_feat, _, _ = _batch(seed)
    expected = _class_loss_loop(student_feat, teacher_feat, labels)
    got = class_representation_loss(student_feat, teacher_feat, labels, NUM_CLASSES)
    assert got.item() == pytest.approx(expected, abs=1e-5)
    assert expected > 0  # the batch has qualifying classes, so the comparison is not 0 == 0


def test_class_representation_loss_is_zero_without_a_repeated_class():
    generator = torch.Generator().manual_seed(5)
    labels = torch.tensor([0, 3, 4, 9])
    got = class_representation_loss(
        torch.randn(4, 5, generator=generator), torch.randn(4, 6, generator=generator), labels, NUM_CLASSES
    )
    assert got.item() == 0.0


@pytest.mark.parametrize("seed", [0, 1])
def test_dictionary_sums_equal_the_per_sample_loop(seed):
    labels, student_feat, _, _, teacher_logits = _batch(seed)
    temperature = 4.0
    feature_sum = [[0.0] * student_feat.shape[1] for _ in range(NUM_CLASSES)]
    weight_sum = [0.0] * NUM_CLASSES
    rows = zip(student_feat.tolist(), teacher_logits.tolist(), labels.tolist(), strict=True)
    for row, logits, label in rows:
        weight = _softmax(logits, temperature)[label]  # a Python scalar, as the reference does
        weight_sum[label] += weight
        feature_sum[label] = [acc + weight * v for acc, v in zip(feature_sum[label], row, strict=True)]
    weights = true_class_probability(teacher_logits, labels, temperature)
    got_feature_sum, got_weight_sum = dictionary_sums(student_feat, weights, labels, NUM_CLASSES)
    torch.testing.assert_close(got_feature_sum, torch.tensor(feature_sum), atol=1e-5, rtol=0)
    torch.testing.assert_close(got_weight_sum, torch.tensor(weight_sum), atol=1e-5, rtol=0)
    absent = [k for k in range(NUM_CLASSES) if k not in set(LABELS)]
    assert got_weight_sum[absent].abs().sum() == 0 and got_feature_sum[absent].abs().sum() == 0


def _dkd_loop(student_logits, teacher_logits, labels, alpha, beta, temperature) -> float:
    total = 0.0
    rows = zip(student_logits.tolist(), teacher_logits.tolist(), labels.tolist(), strict=True)
    for s_row, t_row, label in rows:
        p_s = _softmax(s_row, temperature)
        p_t = _softmax(t_row, temperature)
        tckd = _kl([p_t[label], 1 - p_t[label]], [p_s[label], 1 - p_s[label]])
        rest_s = _softmax([v for c, v in enumerate(s_row) if c != label], temperature)
        rest_t = _softmax([v for c, v in enumerate(t_row) if c != label], temperature)
        total += alpha * tckd + beta * _kl(rest_t, rest_s)
    return temperature**2 * total / len(labels)


@pytest.mark.parametrize(("alpha", "beta", "temperature"), [(1.0, 8.0, 4.0), (0.5, 2.0, 1.0)])
def test_dkd_loss_equals_the_per_sample_loop(alpha, beta, temperature):
    labels, _, _, student_logits, teacher_logits = _batch(7)
    expected = _dkd_loop(student_logits, teacher_logits, labels, alpha, beta, temperature)
    got = dkd_loss(student_logits, teacher_logits, labels, alpha, beta, temperature)
    assert got.item() == pytest.approx(expected, abs=1e-5)


def test_tckd_plus_nckd_weighted_by_the_teacher_non_target_mass_is_kd():
    """KD = TCKD + (1 - p_t[target]) NCKD per sample (DKD paper, Eq. 5): a cross-check of both terms."""
    labels, _, _, student_logits, teacher_logits = _batch(3)
    tckd = dkd_loss(student_logits, teacher_logits, labels, 1.0, 0.0, 4.0)
    # The NCKD of each sample comes from the loop version, weighted by the teacher's non-target mass.
    total = 0.0
    rows = zip(student_logits.tolist(), teacher_logits.tolist(), labels.tolist(), strict=True)
    for s_row, t_row, label in rows:
        p_t = _softmax(t_row, 4.0)
        nckd = _dkd_loop(torch.tensor([s_row]), torch.tensor([t_row]), torch.tensor([label]), 0.0, 1.0, 4.0)
        total += (1 - p_t[label]) * nckd
    kd = kd_loss(student_logits, teacher_logits, 4.0)
    assert tckd.item() + total / len(labels) == pytest.approx(kd.item(), abs=1e-5)


def test_hint_loss_is_the_elementwise_mean_squared_error():
    generator = torch.Generator().manual_seed(0)
    a, b = torch.randn(4, 6, generator=generator), torch.randn(4, 6, generator=generator)
    expected = sum((x - y) ** 2 for x, y in zip(a.flatten().tolist(), b.flatten().tolist(), strict=True)) / 24
    assert hint_loss(a, b).item() == pytest.approx(expected, rel=1e-6)

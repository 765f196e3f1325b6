"""Distillation losses as pure, vectorised functions of tensors.

No Python loop runs over samples or classes: per-class quantities are gathered with one masked Gram
matrix and ``index_add_``, so a step costs the same few kernels whatever the batch's label mix is and
nothing forces a host synchronisation. Every loss is computed in float32 with autocast switched off
around it (``float32_loss``, see precision.py): the inputs may come from a bf16/fp16 autocast region, whose
matmuls would otherwise run the Gram matrices in reduced precision, and squared norms of features
overflow float16 quickly.

Golden tests (tests/distill/test_cid_losses.py) compare each function with a plain loop version.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from cidpipe.distill.precision import float32_loss

# Logit given to the masked-out (target) class in the non-target softmax of DKD: finite, so that
# 0 * (masked - masked) stays 0 instead of NaN, and far below any real logit.
_MASKED_LOGIT = -1.0e9


@float32_loss
def cross_entropy_loss(logits: Tensor, labels: Tensor, label_smoothing: float = 0.0) -> Tensor:
    """Cross-entropy on float32 logits (the student's may be bf16/fp16 from an autocast backbone).

    ``label_smoothing`` as in torch (train.label_smoothing); 0.0 is torch's own default, so the plain
    cross-entropy is the very same call as before the option existed.
    """
    return F.cross_entropy(logits.float(), labels, label_smoothing=label_smoothing)


@float32_loss
def kd_loss(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    """Hinton KD: T^2 / B * sum_i KL(softmax(z_t,i / T) || softmax(z_s,i / T))."""
    log_p_student = F.log_softmax(student_logits.float() / temperature, dim=1)
    log_p_teacher = F.log_softmax(teacher_logits.float() / temperature, dim=1)
    kl = F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True)
    return kl * (temperature * temperature)


@float32_loss
def sample_representation_loss(
    regressed_student_feat: Tensor, teacher_feat: Tensor, eps: float = 1e-12
) -> Tensor:
    """CID sample loss: mean over the batch of ||R(h_s) - h_t||^2 / ||h_t||^2.

    ``eps`` only guards an all-zero teacher feature (the reference has no guard and would divide by 0).
    """
    regressed = regressed_student_feat.float()
    target = teacher_feat.float()
    squared_error = (regressed - target).pow(2).sum(dim=1)
    squared_norm = target.pow(2).sum(dim=1).clamp_min(eps)
    return (squared_error / squared_norm).mean()


def _unit_rows(x: Tensor, eps: float = 1e-12) -> Tensor:
    """Rows scaled to unit L2 norm, x / max(||x||, eps) like F.normalize, with a cheaper backward."""
    return x * x.pow(2).sum(dim=1, keepdim=True).clamp_min(eps * eps).rsqrt()


@float32_loss
def class_representation_loss(
    student_feat: Tensor, teacher_feat: Tensor, labels: Tensor, num_classes: int
) -> Tensor:
    """CID class-shape loss: mean over classes with n_k >= 2 of ||G_t - G_s||_F^2 / n_k^2.

    G are cosine Gram matrices of one class's samples. One batch-wide Gram difference, masked to the
    same-class pairs, holds every class's block. The per-class normalisation is folded into the mask:
    row i (a sample of class k) is weighted by 1 / n_k^2 when n_k >= 2, else 0, and the number of
    qualifying classes is sum_i [n_k >= 2] / n_k. That is the per-class sum without any [K]-sized
    intermediate, so ``num_classes`` only documents the label range.
    """
    del num_classes  # the same-class mask needs no class count (see above)
    student_unit = _unit_rows(student_feat.float())
    teacher_unit = _unit_rows(teacher_feat.float())
    same_class = (labels.unsqueeze(0) == labels.unsqueeze(1)).float()
    class_size = same_class.sum(dim=1)  # n_k of each sample's class
    qualifies = (class_size >= 2).float()
    row_weight = qualifies / class_size.pow(2)
    qualifying_classes = (qualifies / class_size).sum().clamp_min(1.0)  # 0 / 1 when none qualifies
    gram_difference = teacher_unit @ teacher_unit.T - student_unit @ student_unit.T
    weighted = gram_difference.pow(2) * (same_class * row_weight.unsqueeze(1))
    return weighted.sum() / qualifying_classes


@float32_loss
def dictionary_sums(
    features: Tensor, weights: Tensor, labels: Tensor, num_classes: int
) -> tuple[Tensor, Tensor]:
    """Per-class weighted feature sums [K, d] and weight sums [K] (the CID confounder dictionary's parts).

    D[c] = weighted_sum[c] / weight_sum[c]; the caller divides after summing over batches (and ranks).
    """
    features = features.float()
    weights = weights.float()
    weighted_sum = features.new_zeros(num_classes, features.shape[1])
    weighted_sum.index_add_(0, labels, features * weights.unsqueeze(1))
    weight_sum = weights.new_zeros(num_classes).index_add_(0, labels, weights)
    return weighted_sum, weight_sum


@torch.no_grad()
def accumulate_dictionary_sums_(
    feature_sum: Tensor, weight_sum: Tensor, features: Tensor, weights: Tensor, labels: Tensor
) -> None:
    """In-place ``dictionary_sums``: adds this batch's per-class sums into running [K, d] / [K] totals.

    The same sums without a fresh [K, d] zero tensor and a [K, d] addition per training step.
    """
    feature_sum.index_add_(0, labels, features.to(feature_sum.dtype) * weights.to(feature_sum.dtype)[:, None])
    weight_sum.index_add_(0, labels, weights.to(weight_sum.dtype))


@float32_loss
def true_class_probability(teacher_logits: Tensor, labels: Tensor, temperature: float) -> Tensor:
    """w_i = softmax(z_t,i / T)[y_i]: how much the teacher believes sample i's label (CID's weight)."""
    probabilities = F.softmax(teacher_logits.float() / temperature, dim=1)
    return probabilities.gather(1, labels.unsqueeze(1)).squeeze(1)


def _log_binary_and_non_target(logits: Tensor, labels: Tensor, temperature: float) -> tuple[Tensor, Tensor]:
    """log [p_target, 1 - p_target] and log softmax over the non-target classes, for DKD."""
    scaled = logits.float() / temperature
    target_mask = F.one_hot(labels, scaled.shape[1]).bool()
    log_all = torch.logsumexp(scaled, dim=1)
    masked = scaled.masked_fill(target_mask, _MASKED_LOGIT)
    log_non_target_total = torch.logsumexp(masked, dim=1)
    log_target = scaled.gather(1, labels.unsqueeze(1)).squeeze(1) - log_all
    # log(1 - p_target) as a log-sum-exp ratio: stable where p_target is close to 1.
    log_binary = torch.stack([log_target, log_non_target_total - log_all], dim=1)
    log_non_target = masked - log_non_target_total.unsqueeze(1)
    return log_binary, log_non_target


@float32_loss
def dkd_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    labels: Tensor,
    alpha: float,
    beta: float,
    temperature: float,
) -> Tensor:
    """Decoupled KD (Zhao et al., CVPR 2022): alpha * TCKD + beta * NCKD, each batch-mean KL times T^2.

    TCKD compares the binary (target vs rest) distributions, NCKD the distributions over non-target
    classes only.
    """
    student_binary, student_non_target = _log_binary_and_non_target(student_logits, labels, temperature)
    teacher_binary, teacher_non_target = _log_binary_and_non_target(teacher_logits, labels, temperature)
    scale = temperature * temperature
    tckd = F.kl_div(student_binary, teacher_binary, reduction="batchmean", log_target=True) * scale
    nckd = F.kl_div(student_non_target, teacher_non_target, reduction="batchmean", log_target=True) * scale
    return alpha * tckd + beta * nckd


@float32_loss
def hint_loss(regressed_student_feat: Tensor, teacher_feat: Tensor) -> Tensor:
    """FitNet hint: mean squared error between the regressed student feature and the teacher feature."""
    return F.mse_loss(regressed_student_feat.float(), teacher_feat.float())

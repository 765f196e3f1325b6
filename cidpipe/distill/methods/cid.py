"""CID (Deng & Zhang, NeurIPS 2021), exactly as docs/cid-method.md describes the reference behaviour.

Schedule with W = warmup_epochs and 0-based epochs e:
- e < W (warm-up):  L = a*KD + b*L_sample + c*L_class; the head g is unused; predictions use fc_s.
- e >= W:           L = a*(CE(g([h_s ; sigma_T(z_s).detach() @ D]), y) + KD) + b*L_sample + c*L_class;
                    fc_s learns from KD only (z_s is detached on the way into g); predictions use g.
- e >= W-1: every training step adds its detached student features, weighted by the teacher's
  softened probability of the true class, to per-class sums; ``on_epoch_end`` turns them into the
  next dictionary (all-reduced first under torch.distributed, so every rank holds the same D).

Which D is used when. Two dictionaries are kept: ``dictionary`` is the one the current epoch trains
with, ``next_dictionary`` the one built at the end of it. The swap happens in ``on_epoch_start`` of
the following epoch, never in ``on_epoch_end``. So after the last epoch ends, ``dictionary`` is still
the D that epoch trained with (and that g was fitted against): ``predict``, ``deployable`` and the
evaluation after any epoch all use it. The D built at the end of the last epoch would only serve a
next epoch that never comes.

Momentum. The spec applies D <- u*D_old + (1-u)*D_new at the end of each post-warm-up epoch, with D_old
the D that epoch trained with. At the end of the warm-up epoch there is no D yet, so that first D is
D_new itself (mixing it with zeros would only shrink it by 1-u). Rows of classes unseen during an
epoch are 0 in D_new, literally as the spec says, so with u = 0 they become 0.

Precision. Under the trainer's bf16/fp16 autocast only the backbones run in reduced precision: the
losses, the regressor, the dictionary and g get float32 inputs with autocast off (precision.py), so an
AMP step computes the same objective as an fp32 one from the same backbone outputs.

Everything that must survive a resume is a buffer; nothing in ``forward`` reads a tensor back to the
host (phase decisions use the Python epoch mirror kept by the base class).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from cidpipe.distill.base import Distiller, StepOutput
from cidpipe.distill.deploy import CIDDeployable, intervened_logits
from cidpipe.distill.losses import (
    accumulate_dictionary_sums_,
    class_representation_loss,
    kd_loss,
    sample_representation_loss,
    true_class_probability,
)
from cidpipe.distill.precision import as_float32, float32_region
from cidpipe.distill.registry import register_method
from cidpipe.errors import ConfigError, UsageError

# Per-rank accumulators: DistributedDataParallel must not overwrite them with rank 0's copy
# (broadcast_buffers); they are summed across ranks explicitly in on_epoch_end.
_RANK_LOCAL_BUFFERS = ["dictionary_feature_sum", "dictionary_weight_sum"]


@register_method("cid", config_attr="cid")
class CIDDistiller(Distiller):
    requires_teacher_features: ClassVar[bool] = True
    ddp_find_unused_parameters: ClassVar[bool] = True  # g gets no gradient during warm-up

    def __init__(
        self, student: nn.Module, teacher: nn.Module | None, cfg: Any, *, num_classes: int, epochs: int
    ) -> None:
        super().__init__(student, teacher, cfg, num_classes=num_classes, epochs=epochs)
        if epochs <= cfg.warmup_epochs:
            raise ConfigError(
                f"CID needs more epochs ({epochs}) than distill.cid.warmup_epochs ({cfg.warmup_epochs}), "
                "otherwise its interventional head is never trained; lower warmup_epochs or raise epochs"
            )
        feature_dim = int(student.feature_dim)
        self.feature_dim = feature_dim
        self.regressor = nn.Linear(feature_dim, int(teacher.feature_dim))
        self.head = nn.Linear(2 * feature_dim, num_classes)
        self.register_buffer("dictionary", torch.zeros(num_classes, feature_dim))
        self.register_buffer("next_dictionary", torch.zeros(num_classes, feature_dim))
        self.register_buffer("next_dictionary_pending", torch.zeros((), dtype=torch.bool))
        self.register_buffer("dictionary_ready", torch.zeros((), dtype=torch.bool))
        self.register_buffer("dictionary_feature_sum", torch.zeros(num_classes, feature_dim))
        self.register_buffer("dictionary_weight_sum", torch.zeros(num_classes))
        self._ddp_params_and_buffers_to_ignore = list(_RANK_LOCAL_BUFFERS)

    # ----------------------------------------------------------------- phases
    @property
    def warmup_epochs(self) -> int:
        return int(self.cfg.warmup_epochs)

    @property
    def first_selectable_epoch(self) -> int:
        """Model selection keeps only epochs whose model is the CID graph (head g, dictionary D): a warm-up
        epoch's model is the plain student, and exporting it as "the CID student" (it happened on a small
        validation split, where a warm-up epoch tied for best) would deploy another model than the method's.
        """
        return self.warmup_epochs

    def head_in_use(self) -> bool:
        """True from the first post-warm-up epoch on: g (not fc_s) makes the predictions."""
        return self._epoch >= self.warmup_epochs

    def accumulating(self) -> bool:
        """True in the last warm-up epoch and every epoch after it (training steps only)."""
        return self.training and self._epoch >= self.warmup_epochs - 1

    # ----------------------------------------------------------------- training step
    def forward(self, x: Tensor, y: Tensor, index: Tensor | None = None) -> StepOutput:
        features, logits = self.student_features_and_logits(x)
        teacher_features, teacher_logits = self.teacher_features_and_logits(x, index)
        # The backbones ran under the step's autocast (bf16); the losses, the regressor, the dictionary
        # and g run in float32 with autocast off (precision.py). Off autocast this adds no operation.
        with float32_region(features):
            features, logits = as_float32(features), as_float32(logits)
            return self._objective(features, logits, teacher_features, teacher_logits, y)

    def _objective(
        self, features: Tensor, logits: Tensor, teacher_features: Tensor, teacher_logits: Tensor, y: Tensor
    ) -> StepOutput:
        cfg = self.cfg
        kd = kd_loss(logits, teacher_logits, cfg.temperature)
        sample = sample_representation_loss(self.regressor(features), teacher_features)
        shape = class_representation_loss(features, teacher_features, y, self.num_classes)
        parts = {"kd": kd, "sample": sample, "class": shape}
        if self.accumulating():
            self._accumulate(features.detach(), teacher_logits, y)
        if self.head_in_use():
            # p is detached: CE reaches the backbone through g's feature half, never fc_s.
            predicted = intervened_logits(
                self.head, features, logits.detach(), self.dictionary, cfg.temperature
            )
            # label_smoothing 0.0 (the default) is torch's own default: the reference CE, unchanged.
            ce = F.cross_entropy(predicted, y, label_smoothing=self.label_smoothing)
            parts["ce"] = ce
            loss = cfg.kd_weight * (ce + kd) + cfg.sample_weight * sample + cfg.class_weight * shape
        else:
            predicted = logits
            loss = cfg.kd_weight * kd + cfg.sample_weight * sample + cfg.class_weight * shape
        return StepOutput(loss=loss, logits=predicted, parts=parts)

    @torch.no_grad()
    def _accumulate(self, features: Tensor, teacher_logits: Tensor, labels: Tensor) -> None:
        weights = true_class_probability(teacher_logits, labels, self.cfg.temperature)
        accumulate_dictionary_sums_(
            self.dictionary_feature_sum, self.dictionary_weight_sum, features, weights, labels
        )

    # ----------------------------------------------------------------- epoch boundaries
    def on_epoch_start(self, epoch: int) -> None:
        super().on_epoch_start(epoch)
        if bool(self.next_dictionary_pending):
            self.dictionary.copy_(self.next_dictionary)
            self.next_dictionary_pending.fill_(False)
        if self.head_in_use() and not bool(self.dictionary_ready):
            raise UsageError(
                f"CID epoch {epoch} needs the dictionary built in warm-up epoch {self.warmup_epochs - 1}, "
                "but none was built; resume from a checkpoint written after the warm-up, or start over"
            )
        # An epoch's accumulation always starts from zero (also when an interrupted epoch is rerun).
        self.dictionary_feature_sum.zero_()
        self.dictionary_weight_sum.zero_()

    @torch.no_grad()
    def on_epoch_end(self, epoch: int) -> None:
        """Build the next dictionary; under torch.distributed every rank must call this (collective)."""
        if epoch < self.warmup_epochs - 1:
            return
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(self.dictionary_feature_sum)
            dist.all_reduce(self.dictionary_weight_sum)
        weight_sum = self.dictionary_weight_sum.unsqueeze(1)
        seen = weight_sum > 0
        new_dictionary = torch.where(
            seen, self.dictionary_feature_sum / weight_sum.clamp_min(torch.finfo(weight_sum.dtype).tiny), 0.0
        )
        momentum = float(self.cfg.dictionary_momentum)
        if bool(self.dictionary_ready):
            new_dictionary = momentum * self.dictionary + (1.0 - momentum) * new_dictionary
        self.next_dictionary.copy_(new_dictionary)
        self.next_dictionary_pending.fill_(True)
        self.dictionary_ready.fill_(True)
        self.dictionary_feature_sum.zero_()
        self.dictionary_weight_sum.zero_()

    # ----------------------------------------------------------------- evaluation and export
    def predict(self, x: Tensor) -> Tensor:
        features, logits = self.student_features_and_logits(x)
        if not self.head_in_use():
            return logits  # g is still untrained during warm-up
        return intervened_logits(self.head, features, logits, self.dictionary, self.cfg.temperature)

    def no_weight_decay_modules(self) -> Iterable[nn.Module]:
        return (self.regressor,)

    def deployable(self) -> nn.Module:
        """Backbone + fc_s + a copy of the D in use + g (shared parameters); the plain student in warm-up."""
        if not self.head_in_use():
            return self.student
        return CIDDeployable(self.student, self.dictionary.clone(), float(self.cfg.temperature), self.head)

    def deployment_spec(self) -> dict:
        if not self.head_in_use():
            return {"head": "plain"}
        return {
            "head": "cid",
            "temperature": float(self.cfg.temperature),
            "feature_dim": self.feature_dim,
            "num_classes": self.num_classes,
        }

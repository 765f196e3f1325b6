"""Hinton et al. 2015: cross-entropy plus temperature-softened KL to the teacher's logits."""

from __future__ import annotations

from torch import Tensor

from cidpipe.distill.base import Distiller, StepOutput
from cidpipe.distill.losses import kd_loss
from cidpipe.distill.registry import register_method


@register_method("kd", config_attr="kd")
class KDDistiller(Distiller):
    """Loss = ce_weight * CE + kd_weight * KD."""

    def forward(self, x: Tensor, y: Tensor, index: Tensor | None = None) -> StepOutput:
        logits = self.student(x)
        teacher_logits = self.teacher_logits(x, index)
        ce = self.ce(logits, y)
        kd = kd_loss(logits, teacher_logits, self.cfg.temperature)
        loss = self.cfg.ce_weight * ce + self.cfg.kd_weight * kd
        return StepOutput(loss=loss, logits=logits, parts={"ce": ce, "kd": kd})

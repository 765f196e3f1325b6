"""Decoupled KD (Zhao et al., CVPR 2022): CE plus TCKD/NCKD, the KD terms ramped in linearly.

The ramp follows the paper's code: factor min((epoch + 1) / warmup_epochs, 1) with 0-based epochs,
i.e. 1/W in the first epoch and 1 from epoch W-1 on.
"""

from __future__ import annotations

from torch import Tensor

from cidpipe.distill.base import Distiller, StepOutput
from cidpipe.distill.losses import dkd_loss
from cidpipe.distill.registry import register_method


@register_method("dkd", config_attr="dkd")
class DKDDistiller(Distiller):
    """Loss = ce_weight * CE + ramp(epoch) * (alpha * TCKD + beta * NCKD)."""

    def ramp(self) -> float:
        warmup = self.cfg.warmup_epochs
        return 1.0 if warmup <= 0 else min((self._epoch + 1) / warmup, 1.0)

    def forward(self, x: Tensor, y: Tensor, index: Tensor | None = None) -> StepOutput:
        logits = self.student(x)
        teacher_logits = self.teacher_logits(x, index)
        ce = self.ce(logits, y)
        dkd = dkd_loss(logits, teacher_logits, y, self.cfg.alpha, self.cfg.beta, self.cfg.temperature)
        loss = self.cfg.ce_weight * ce + self.ramp() * dkd
        return StepOutput(loss=loss, logits=logits, parts={"ce": ce, "dkd": dkd})

"""FitNet (Romero et al. 2015): cross-entropy plus a hint loss through a linear regressor.

The paper hints on an intermediate feature map through a convolutional regressor; cidpipe hints on the
penultimate (pooled) feature through ``Linear(d_s, d_t)`` instead, because that is the one feature every
model in the zoo exposes (``forward_features``) and the distillers never reach into a model by index.
"""

from __future__ import annotations

from typing import Any, ClassVar

from torch import Tensor, nn

from cidpipe.distill.base import Distiller, StepOutput
from cidpipe.distill.losses import hint_loss
from cidpipe.distill.precision import as_float32, float32_region
from cidpipe.distill.registry import register_method


@register_method("fitnet", config_attr="fitnet")
class FitNetDistiller(Distiller):
    """Loss = ce_weight * CE + hint_weight * MSE(R(h_s), h_t)."""

    requires_teacher_features: ClassVar[bool] = True

    def __init__(
        self, student: nn.Module, teacher: nn.Module | None, cfg: Any, *, num_classes: int, epochs: int
    ) -> None:
        super().__init__(student, teacher, cfg, num_classes=num_classes, epochs=epochs)
        self.regressor = nn.Linear(student.feature_dim, teacher.feature_dim)

    def forward(self, x: Tensor, y: Tensor, index: Tensor | None = None) -> StepOutput:
        features, logits = self.student_features_and_logits(x)
        teacher_features, _ = self.teacher_features_and_logits(x, index)
        ce = self.ce(logits, y)
        with float32_region(features):  # the regressor is a loss-side head: float32 (precision.py)
            regressed = self.regressor(as_float32(features))
        hint = hint_loss(regressed, teacher_features)
        loss = self.cfg.ce_weight * ce + self.cfg.hint_weight * hint
        return StepOutput(loss=loss, logits=logits, parts={"ce": ce, "hint": hint})

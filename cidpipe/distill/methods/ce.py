"""Plain cross-entropy: the student alone (also how the ``train`` stage trains a teacher)."""

from __future__ import annotations

from typing import ClassVar

from cidpipe.distill.base import Distiller
from cidpipe.distill.registry import register_method


@register_method("ce", config_attr="ce")
class CEDistiller(Distiller):
    """Loss = CE(student(x), y); a teacher, if given, is ignored."""

    requires_teacher: ClassVar[bool] = False

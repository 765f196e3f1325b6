"""Distillation methods by name: ``register_method`` on each class, ``build_distiller`` for the trainer."""

from __future__ import annotations

import difflib
from collections.abc import Callable

from torch import nn

from cidpipe.errors import ConfigError, ModelError, UsageError

_METHODS: dict[str, tuple[type, str]] = {}


def register_method(name: str, config_attr: str) -> Callable[[type], type]:
    """Class decorator: the method ``name`` takes its settings from ``DistillConfig.<config_attr>``."""

    def decorate(cls: type) -> type:
        if name in _METHODS and _METHODS[name][0] is not cls:
            raise ValueError(f"distillation method {name!r} is registered twice")
        _METHODS[name] = (cls, config_attr)
        return cls

    return decorate


def _ensure_methods_imported() -> None:
    # Imported here, not at module top: the method modules import this one to register themselves.
    import cidpipe.distill.methods  # noqa: F401


def list_methods() -> list[str]:
    _ensure_methods_imported()
    return sorted(_METHODS)


def _model_name(model: nn.Module) -> str:
    return str(getattr(model, "name", type(model).__name__))


def _require_feature_api(model: nn.Module, role: str) -> None:
    missing = [a for a in ("feature_dim", "forward_features", "classifier") if not hasattr(model, a)]
    if missing:
        raise ModelError(
            f"{role} model {_model_name(model)} exposes no {missing[0]} (the feature API); "
            "build it with cidpipe.models.build_model or give it forward_features/classifier/feature_dim"
        )


def _classes_of(model: nn.Module) -> int | None:
    if hasattr(model, "num_classes"):
        return int(model.num_classes)
    classifier = getattr(model, "classifier", None)
    return int(classifier.out_features) if isinstance(classifier, nn.Linear) else None


def build_distiller(
    method: str,
    student: nn.Module,
    teacher: nn.Module | None,
    distill_cfg,
    *,
    num_classes: int,
    epochs: int,
):
    """The configured Distiller for ``method``, with its section of ``distill_cfg`` (a DistillConfig)."""
    _ensure_methods_imported()
    if method not in _METHODS:
        close = difflib.get_close_matches(method, list(_METHODS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(
            f"unknown distillation method {method!r}{hint}; set distill.method to one of "
            f"{', '.join(sorted(_METHODS))}"
        )
    cls, config_attr = _METHODS[method]
    _require_feature_api(student, "student")
    student_classes = _classes_of(student)
    if student_classes is not None and student_classes != num_classes:
        raise ModelError(
            f"student model {_model_name(student)} predicts {student_classes} classes but the dataset has "
            f"{num_classes}; build the student with num_classes={num_classes}"
        )
    if cls.requires_teacher and teacher is None:
        raise UsageError(
            f"distillation method {method!r} needs a teacher; train one first (cidpipe train) "
            "or choose distill.method: ce"
        )
    if cls.requires_teacher and teacher is not None:
        teacher_classes = _classes_of(teacher)
        if teacher_classes is not None and teacher_classes != num_classes:
            raise ModelError(
                f"teacher model {_model_name(teacher)} predicts {teacher_classes} classes but the dataset "
                f"has {num_classes}; train the teacher on the same dataset"
            )
        if cls.requires_teacher_features:
            _require_feature_api(teacher, "teacher")
    return cls(student, teacher, getattr(distill_cfg, config_attr), num_classes=num_classes, epochs=epochs)

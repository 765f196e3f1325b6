"""The Distiller contract every method implements; the trainer knows nothing else about a method.

One constructor for all methods; ``forward(x, y)`` returns the loss, the logits the method predicts
with, and the named loss parts. The teacher is frozen and always in eval mode.

The teacher is deliberately NOT a registered submodule: it stays out of ``state_dict()`` (a resume
reloads it from the teacher stage instead of storing it twice), out of ``parameters()`` (so it can never
reach an optimizer) and out of DistributedDataParallel's parameter/buffer sync. ``.to()``, ``.cuda()``
and ``.half()`` still move it, through ``_apply``.

Method state that must survive ``--resume`` lives in registered buffers (the epoch counter here, CID's
dictionary and accumulators in its own file), so ``state_dict()`` captures it exactly. The Python-side
copy of the epoch (used for phase decisions without a host sync) is refreshed after ``load_state_dict``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from cidpipe.distill.losses import cross_entropy_loss


@dataclass
class StepOutput:
    """What one training step of a method yields."""

    loss: Tensor
    logits: Tensor
    parts: dict[str, Tensor] = field(default_factory=dict)


class Distiller(nn.Module):
    """Base class: the student trained with cross-entropy, plus the shared plumbing for teachers."""

    requires_teacher: ClassVar[bool] = True
    # Methods whose teacher must expose forward_features/classifier/feature_dim (not only logits).
    requires_teacher_features: ClassVar[bool] = False
    # True where some trainable parameter is unused in some steps (CID's head during warm-up), so a
    # DistributedDataParallel wrapper needs find_unused_parameters=True.
    ddp_find_unused_parameters: ClassVar[bool] = False

    def __init__(
        self, student: nn.Module, teacher: nn.Module | None, cfg: Any, *, num_classes: int, epochs: int
    ) -> None:
        super().__init__()
        self.student = student
        self.cfg = cfg
        self.num_classes = int(num_classes)
        self.epochs = int(epochs)
        if teacher is not None:
            teacher.requires_grad_(False)
            teacher.eval()
        # Bypass nn.Module.__setattr__ so the teacher is not registered (see the module docstring).
        self.__dict__["_frozen_teacher"] = teacher
        self.register_buffer("current_epoch", torch.zeros((), dtype=torch.long))
        self._epoch = 0
        # train.label_smoothing of the CE terms; set by the trainer (set_label_smoothing), 0 = plain CE.
        self.label_smoothing = 0.0
        self.register_load_state_dict_post_hook(_refresh_python_state)

    # ----------------------------------------------------------------- teacher plumbing
    @property
    def teacher(self) -> nn.Module | None:
        return self.__dict__["_frozen_teacher"]

    def _apply(self, fn, recurse=True):  # noqa: ANN001 - nn.Module's own signature
        result = super()._apply(fn, recurse)
        if self.teacher is not None:
            self.teacher._apply(fn, recurse)
        return result

    def train(self, mode: bool = True) -> Distiller:
        super().train(mode)
        if self.teacher is not None:
            self.teacher.eval()
        return self

    # The teacher runs under no_grad, not inference_mode: its outputs are saved for the backward pass of
    # the losses (KL's target), which inference tensors cannot be. Under the trainer's autocast it runs in
    # bf16/fp16 like the student; its outputs are returned in float32 either way, and the losses run in
    # float32 with autocast off (losses.py, precision.py).
    def teacher_logits(self, x: Tensor, index: Tensor | None = None) -> Tensor:
        cached = self._cached_teacher_outputs(index, need_features=False)
        if cached is not None:
            return cached[0]
        assert self.teacher is not None
        with torch.no_grad():
            return self.teacher(x).float()

    def teacher_features_and_logits(self, x: Tensor, index: Tensor | None = None) -> tuple[Tensor, Tensor]:
        cached = self._cached_teacher_outputs(index, need_features=True)
        if cached is not None:
            return cached[1], cached[0]
        assert self.teacher is not None
        with torch.no_grad():
            features = self.teacher.forward_features(x)
            return features.float(), self.teacher.classifier(features).float()

    # ----------------------------------------------------------------- teacher-output cache
    def set_teacher_cache(self, logits: Tensor, features: Tensor | None = None) -> None:
        """Teacher outputs of every training sample, [N, K] logits and optionally [N, d_t] features.

        While set, ``forward(x, y, index)`` looks the teacher's outputs up by the samples' storage
        ``index`` instead of running the teacher. Exact only when the training images are not augmented
        (the cache holds the teacher's view of the un-augmented image). Not a buffer: it stays out of the
        state_dict and is rebuilt by the trainer; build it on the training device.
        """
        self.__dict__["_teacher_cache"] = (logits.float(), None if features is None else features.float())

    def clear_teacher_cache(self) -> None:
        self.__dict__.pop("_teacher_cache", None)

    @torch.no_grad()
    def build_teacher_cache(self, batches: Iterable[tuple[Tensor, ...]], num_samples: int) -> None:
        """Run the (eval-mode) teacher once over ``(x, y, index)`` batches covering all ``num_samples``.

        Features are stored only for methods that use them (``requires_teacher_features``).
        """
        if self.teacher is None:
            return
        self.clear_teacher_cache()
        logits_cache: Tensor | None = None
        features_cache: Tensor | None = None
        for x, _, index in batches:
            features, logits = (
                self.teacher_features_and_logits(x) if self.requires_teacher_features
                else (None, self.teacher_logits(x))
            )
            if logits_cache is None:
                logits_cache = logits.new_zeros(num_samples, logits.shape[1])
                if features is not None:
                    features_cache = features.new_zeros(num_samples, features.shape[1])
            logits_cache[index] = logits
            if features_cache is not None:
                features_cache[index] = features
        if logits_cache is not None:
            self.set_teacher_cache(logits_cache, features_cache)

    def _cached_teacher_outputs(self, index: Tensor | None, *, need_features: bool) -> tuple | None:
        cache = self.__dict__.get("_teacher_cache")
        if cache is None or index is None or (need_features and cache[1] is None):
            return None
        logits, features = cache
        return logits[index], None if features is None else features[index]

    def student_features_and_logits(self, x: Tensor) -> tuple[Tensor, Tensor]:
        features = self.student.forward_features(x)
        return features, self.student.classifier(features)

    # ----------------------------------------------------------------- the contract
    def set_label_smoothing(self, label_smoothing: float) -> None:
        """Label smoothing of every CE term of the method (train.label_smoothing); call before training."""
        self.label_smoothing = float(label_smoothing)

    def ce(self, logits: Tensor, y: Tensor) -> Tensor:
        """The method's cross-entropy term, with the configured label smoothing."""
        return cross_entropy_loss(logits, y, self.label_smoothing)

    def forward(self, x: Tensor, y: Tensor, index: Tensor | None = None) -> StepOutput:
        """``index``: the batch's storage indices, for methods that look up cached teacher outputs."""
        logits = self.student(x)
        ce = self.ce(logits, y)
        return StepOutput(loss=ce, logits=logits, parts={"ce": ce})

    def predict(self, x: Tensor) -> Tensor:
        """The evaluation path (call in eval mode): the logits the deployed model would produce."""
        return self.student(x)

    def on_epoch_start(self, epoch: int) -> None:
        """Called before epoch ``epoch`` (0-based), also right after a resume."""
        self._epoch = int(epoch)
        self.current_epoch.fill_(int(epoch))

    def on_epoch_end(self, epoch: int) -> None:
        """Called after the last step of epoch ``epoch`` (0-based), before its checkpoint is written."""

    def no_weight_decay_modules(self) -> Iterable[nn.Module]:
        """Trainable modules whose parameters are optimised without weight decay."""
        return ()

    def param_groups(self, weight_decay: float) -> list[dict]:
        """Trainable parameters (never the teacher's) grouped by weight decay, ready for an optimizer."""
        exempt = {id(p) for module in self.no_weight_decay_modules() for p in module.parameters()}
        trainable = [p for p in self.parameters() if p.requires_grad]
        decayed = [p for p in trainable if id(p) not in exempt]
        undecayed = [p for p in trainable if id(p) in exempt]
        groups = []
        if decayed:
            groups.append({"name": "decay", "params": decayed, "weight_decay": float(weight_decay)})
        if undecayed:
            groups.append({"name": "no_decay", "params": undecayed, "weight_decay": 0.0})
        return groups

    def deployable(self) -> nn.Module:
        """The single module that goes to export; shares parameters with this distiller (no copy).

        The caller puts it in eval mode before exporting or evaluating it.
        """
        return self.student

    def deployment_spec(self) -> dict:
        """JSON-able recipe to rebuild ``deployable()`` around a freshly built student (see deploy.py)."""
        return {"head": "plain"}


def _refresh_python_state(module: nn.Module, incompatible_keys: Any) -> None:
    """load_state_dict post-hook: the Python epoch mirror follows the restored buffer."""
    module._epoch = int(module.current_epoch)

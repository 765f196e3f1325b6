"""The deployable student: what export, quantisation and benchmarks run.

For plain methods it is the student itself. A CID student predicts through the backdoor-adjusted head
(docs/cid-method.md, "The deployable model"): backbone -> (h, fc_s(h)) -> p = softmax(z / T) ->
m = p @ D -> g([h ; m]). D and T are buffers, so they travel in the state dict and the ONNX graph.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cidpipe.distill.precision import autocast_active, float32_region
from cidpipe.errors import ModelError


class CIDDeployable(nn.Module):
    """Backbone + its own classifier fc_s + confounder dictionary + interventional head g.

    The forward pass has no data-dependent Python control flow, so it traces and exports to ONNX as is.
    """

    def __init__(self, backbone: nn.Module, dictionary: Tensor, temperature: float | Tensor, head: nn.Linear):
        super().__init__()
        num_classes, feature_dim = dictionary.shape
        if head.in_features != 2 * feature_dim or head.out_features != num_classes:
            raise ModelError(
                f"CID head is Linear({head.in_features}, {head.out_features}) but the dictionary is "
                f"[{num_classes}, {feature_dim}]; it must be Linear({2 * feature_dim}, {num_classes})"
            )
        self.backbone = backbone
        self.head = head
        self.register_buffer("dictionary", dictionary)
        self.register_buffer(
            "temperature", torch.as_tensor(temperature, dtype=dictionary.dtype, device=dictionary.device)
        )

    def forward(self, x: Tensor) -> Tensor:
        features = self.backbone.forward_features(x)
        logits = self.backbone.classifier(features)
        return intervened_logits(self.head, features, logits, self.dictionary, self.temperature)


def intervened_logits(
    head: nn.Linear, features: Tensor, student_logits: Tensor, dictionary: Tensor, temperature: float | Tensor
) -> Tensor:
    """g([h ; softmax(z / T) @ D]): feature first, dictionary context second (CID's backdoor adjustment).

    Under autocast ``p @ D`` and g would run in bf16/fp16 while g is trained and judged as a float32
    head, so they run with autocast off on float32 inputs. Off autocast nothing is cast (a half-precision
    deployable stays half, an exported graph gets no extra node).
    """
    if autocast_active(features):
        with float32_region(features):
            return _intervene(head, features.float(), student_logits.float(), dictionary.float(), temperature)
    return _intervene(head, features, student_logits, dictionary, temperature)


def _intervene(
    head: nn.Linear, features: Tensor, student_logits: Tensor, dictionary: Tensor, temperature: float | Tensor
) -> Tensor:
    probabilities = F.softmax(student_logits / temperature, dim=1)
    context = probabilities.to(dictionary.dtype) @ dictionary
    return head(torch.cat([features, context.to(features.dtype)], dim=1))


def build_deployable(student: nn.Module, spec: dict) -> nn.Module:
    """Rebuild the deployable around a freshly built student; fill it with ``load_state_dict`` afterwards.

    ``spec`` is what ``Distiller.deployment_spec()`` returned: {"head": "plain"} or {"head": "cid",
    "temperature": T, "feature_dim": d, "num_classes": K}.
    """
    head_kind = spec.get("head")
    if head_kind == "plain":
        return student
    if head_kind != "cid":
        raise ModelError(
            f"unknown deployable head {head_kind!r} in the stage manifest; expected 'plain' or 'cid'"
        )
    try:
        feature_dim = int(spec["feature_dim"])
        num_classes = int(spec["num_classes"])
        temperature = float(spec["temperature"])
    except (KeyError, TypeError, ValueError) as err:
        raise ModelError(f"CID deployment spec {spec} lacks a valid {err}; re-run the distill stage") from err
    student_dim = getattr(student, "feature_dim", None)
    if student_dim is not None and int(student_dim) != feature_dim:
        raise ModelError(
            f"CID deployment spec expects feature_dim {feature_dim} but the student has {student_dim}; "
            "build the same student architecture the distill stage used"
        )
    reference = next(iter(student.parameters()), None)
    device = reference.device if reference is not None else None
    dictionary = torch.zeros(num_classes, feature_dim, device=device)
    head = nn.Linear(2 * feature_dim, num_classes, device=device)
    return CIDDeployable(student, dictionary, temperature, head)

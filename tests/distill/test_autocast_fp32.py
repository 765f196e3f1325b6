"""Under autocast the backbones run in bf16 but every loss, the regressor and CID's head run in float32.

The student and teacher here are stubs that return fixed, bf16-representable features and logits (in
bf16 while autocast is on, like a real bf16 backbone). So the fp32 reference and the autocast step see
exactly the same backbone outputs, and any difference comes from the losses and heads alone.
CPU bf16 autocast stands in for the trainer's CUDA AMP (same dtype policy for matmul and linear).
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from cidpipe.distill import build_distiller, list_methods
from cidpipe.distill.deploy import CIDDeployable, intervened_logits
from cidpipe.distill.losses import (
    class_representation_loss,
    dkd_loss,
    hint_loss,
    kd_loss,
    sample_representation_loss,
)

K, B, D_S, D_T = 10, 64, 48, 80
RTOL = 1e-5


def _bf16_exact(*shape: int, generator: torch.Generator, relu: bool = False, scale: float = 1.0) -> Tensor:
    """Random float32 values that bf16 represents exactly (so casting to bf16 loses nothing)."""
    values = torch.randn(*shape, generator=generator) * scale
    if relu:
        values = values.relu() + 0.05  # pooled ReLU features: non-negative, never all zero
    return values.bfloat16().float()


def _as_backbone_output(value: Tensor) -> Tensor:
    """What a backbone would hand over: its output in the autocast dtype while autocast is on."""
    if torch.is_autocast_enabled("cpu"):
        return value.to(torch.get_autocast_dtype("cpu"))
    return value


class _FixedLogits(nn.Module):
    def __init__(self, logits: Tensor) -> None:
        super().__init__()
        self.logits = nn.Parameter(logits)

    def forward(self, features: Tensor) -> Tensor:
        return _as_backbone_output(self.logits)


class FixedModel(nn.Module):
    """The feature API (forward_features, classifier, feature_dim, num_classes) over fixed outputs.

    The outputs are parameters, so the backward pass of the losses reaches "the backbone".
    """

    def __init__(self, features: Tensor, logits: Tensor) -> None:
        super().__init__()
        self.feature_dim, self.num_classes = features.shape[1], logits.shape[1]
        self.features = nn.Parameter(features)
        self.classifier = _FixedLogits(logits)

    def forward_features(self, x: Tensor) -> Tensor:
        return _as_backbone_output(self.features)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.forward_features(x))


def _labels(generator: torch.Generator) -> Tensor:
    # Repeated labels (class blocks for the class loss), a few singletons would also be fine.
    return torch.randint(0, K, (B,), generator=generator)


def _distiller(method: str, distill_cfg, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    student = FixedModel(_bf16_exact(B, D_S, generator=generator, relu=True),
                         _bf16_exact(B, K, generator=generator, scale=3.0))
    teacher = FixedModel(_bf16_exact(B, D_T, generator=generator, relu=True),
                         _bf16_exact(B, K, generator=generator, scale=3.0))
    torch.manual_seed(seed)  # the regressor and head initialise from the global generator
    distiller = build_distiller(method, student, teacher, distill_cfg, num_classes=K, epochs=5)
    distiller.train()
    if method == "cid":  # post-warm-up: the head and a built dictionary are in use
        distiller.dictionary.copy_(_bf16_exact(K, D_S, generator=generator, relu=True))
        distiller.dictionary_ready.fill_(True)
        distiller.on_epoch_start(distill_cfg.cid.warmup_epochs)
    else:
        distiller.on_epoch_start(1)
    return distiller, _labels(generator)


def _relative_error(actual: Tensor, expected: Tensor) -> float:
    actual, expected = actual.detach().double(), expected.detach().double()
    return float((actual - expected).abs() / expected.abs().clamp_min(1e-30))


def _step(distiller, y: Tensor, *, autocast: bool):
    x = torch.zeros(B, 3, 4, 4)  # ignored by the fixed models
    distiller.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        out = distiller(x, y)
    out.loss.backward()
    grads = {name: p.grad.clone() for name, p in distiller.named_parameters() if p.grad is not None}
    return out, grads


@pytest.mark.parametrize("method", list_methods())
def test_loss_and_parts_under_autocast_equal_the_fp32_reference(method, distill_cfg):
    distiller, y = _distiller(method, distill_cfg)
    reference, reference_grads = _step(distiller, y, autocast=False)
    autocast, autocast_grads = _step(distiller, y, autocast=True)
    assert autocast.loss.dtype == torch.float32
    assert _relative_error(autocast.loss, reference.loss) <= RTOL
    assert autocast.parts.keys() == reference.parts.keys()
    for name, part in autocast.parts.items():
        assert part.dtype == torch.float32, name
        assert _relative_error(part, reference.parts[name]) <= RTOL, name
    # Gradients of the fp32 heads (regressor, CID's g) follow: they see float32 inputs only.
    for name in ("regressor.weight", "head.weight"):
        if name in reference_grads:
            torch.testing.assert_close(autocast_grads[name], reference_grads[name], rtol=RTOL, atol=1e-7)


@pytest.mark.parametrize("method", ["fitnet", "cid"])
def test_regressor_and_head_outputs_are_float32_under_autocast(method, distill_cfg):
    distiller, y = _distiller(method, distill_cfg)
    dtypes: dict[str, torch.dtype] = {}

    def record(name: str):
        def hook(module: nn.Module, inputs: tuple, output: Tensor) -> None:
            dtypes[name] = output.dtype

        return hook

    for name in ("regressor", "head"):
        module = getattr(distiller, name, None)
        if module is not None:
            module.register_forward_hook(record(name))
    _step(distiller, y, autocast=True)
    assert dtypes and all(dtype == torch.float32 for dtype in dtypes.values()), dtypes


def test_cid_prediction_and_deployable_run_the_head_in_float32_under_autocast(distill_cfg):
    distiller, _ = _distiller("cid", distill_cfg)
    distiller.eval()
    x = torch.zeros(B, 3, 4, 4)
    with torch.no_grad():
        reference = distiller.predict(x)
        deployable = CIDDeployable(distiller.student, distiller.dictionary.clone(), 4.0, distiller.head)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            predicted = distiller.predict(x)
            deployed = deployable(x)
    for logits in (predicted, deployed):
        assert logits.dtype == torch.float32
        torch.testing.assert_close(logits, reference, rtol=RTOL, atol=1e-6)


def test_intervened_logits_leaves_a_half_precision_model_alone_without_autocast():
    """Off autocast nothing is cast: a .half() deployable keeps running in half (and exports unchanged)."""
    head = nn.Linear(2 * D_S, K).half()
    features = torch.rand(4, D_S).half()
    logits = torch.randn(4, K).half()
    dictionary = torch.rand(K, D_S).half()
    assert intervened_logits(head, features, logits, dictionary, 4.0).dtype == torch.float16


def test_each_loss_function_is_float32_inside_an_autocast_region():
    """The pure loss functions are safe on their own too, not only through the distillers."""
    generator = torch.Generator().manual_seed(3)
    student = _bf16_exact(B, D_S, generator=generator, relu=True)
    teacher = _bf16_exact(B, D_S, generator=generator, relu=True)
    z_s = _bf16_exact(B, K, generator=generator, scale=3.0)
    z_t = _bf16_exact(B, K, generator=generator, scale=3.0)
    y = _labels(generator)
    losses = {
        "kd": lambda s, t, zs, zt: kd_loss(zs, zt, 4.0),
        "sample": lambda s, t, zs, zt: sample_representation_loss(s, t),
        "class": lambda s, t, zs, zt: class_representation_loss(s, t, y, K),
        "dkd": lambda s, t, zs, zt: dkd_loss(zs, zt, y, 1.0, 8.0, 4.0),
        "hint": lambda s, t, zs, zt: hint_loss(s, t),
    }
    for name, loss in losses.items():
        reference = loss(student, teacher, z_s, z_t)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            value = loss(student.bfloat16(), teacher.bfloat16(), z_s.bfloat16(), z_t.bfloat16())
        assert value.dtype == torch.float32, name
        assert _relative_error(value, reference) <= RTOL, name

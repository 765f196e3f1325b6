"""Registry-driven sweep of edge architectures from timm and torchvision through the whole pipeline path:
the feature API with the library network's own logits, one CID distillation step past its warm-up, ONNX
export of the CID deployable with parity, static INT8 quantisation and an onnxruntime run of the INT8 model.

Tiny inputs (32 px, batch 2, 10 classes) keep it to a few seconds per architecture; nothing is downloaded.
Dropped from the list, and why (timm 1.0.31 / torchvision 0.29.1):
- timm efficientformer_l1, levit_*: two classifier heads (a distillation head) the feature API cannot
  express. efficientformerv2_s0 builds with ``kwargs: {distillation: false}`` and exports with parity, but
  onnxruntime's quantization pre-processing stops on it ("Incomplete symbolic shape inference").
- timm dla46_c, torchvision squeezenet*: the classifier is a 1x1 convolution, not an nn.Linear.
"""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch
import torchvision

from cidpipe.distill.config import DistillConfig
from cidpipe.distill.registry import build_distiller
from cidpipe.export.ort_run import make_session, run_onnx
from cidpipe.export.parity import check_parity
from cidpipe.export.torch2onnx import export_onnx
from cidpipe.models import build_model
from cidpipe.models.sources import build_from_config
from cidpipe.quantize.config import QuantizeConfig
from cidpipe.quantize.int8 import quantize_static_int8
from cidpipe.train_config import ModelConfig

CLASSES, SIZE, BATCH = 10, 32, 2

# (arch, kwargs): MobileNetV3/V4, EfficientNet/-lite, RegNet, GhostNet, MobileOne, FastViT, MobileViT,
# LCNet, MNASNet, ... all small enough for an edge device.
TIMM_ARCHS = [
    ("timm:mobilenetv3_small_050", {}),
    ("timm:mobilenetv4_conv_small", {}),
    ("timm:efficientnet_lite0", {}),
    ("timm:tinynet_e", {}),
    ("timm:regnetx_002", {}),
    ("timm:ghostnet_050", {}),
    ("timm:mobileone_s0", {}),
    ("timm:fastvit_t8", {}),
    ("timm:mobilevit_xxs", {}),
    ("timm:tf_mobilenetv3_small_minimal_100", {}),
    ("timm:lcnet_050", {}),
    ("timm:mnasnet_050", {}),
    ("timm:mobilenetv2_050", {}),
    ("timm:edgenext_xx_small", {}),
    ("timm:resnet10t", {}),
]
TORCHVISION_ARCHS = [
    ("torchvision:mobilenet_v3_small", {}),
    ("torchvision:mobilenet_v2", {"width_mult": 0.5}),
    ("torchvision:mnasnet0_5", {}),
    ("torchvision:shufflenet_v2_x0_5", {}),
    ("torchvision:resnet18", {}),
]


def _native(arch: str, kwargs: dict) -> torch.nn.Module:
    kind, name = arch.split(":")
    if kind == "timm":
        return timm.create_model(name, num_classes=CLASSES, **kwargs)
    return torchvision.models.get_model(name, weights=None, num_classes=CLASSES, **kwargs)


def _cid_step(student: torch.nn.Module) -> torch.nn.Module:
    """Warm-up epoch (dictionary built), then one step with the interventional head: the deployable."""
    torch.manual_seed(1)
    teacher = build_model("resnet8", CLASSES)
    cfg = DistillConfig()
    cfg.cid.warmup_epochs = 1
    distiller = build_distiller("cid", student, teacher, cfg, num_classes=CLASSES, epochs=2).train()
    x, y = torch.randn(BATCH, 3, SIZE, SIZE), torch.tensor([0, 1])
    for epoch in (0, 1):
        distiller.on_epoch_start(epoch)
        out = distiller(x, y)
        out.loss.backward()
        assert torch.isfinite(out.loss), f"epoch {epoch}: loss {out.loss}"
        distiller.on_epoch_end(epoch)
    assert distiller.head_in_use()
    return _settle_batch_norm(distiller.deployable())


@torch.no_grad()
def _settle_batch_norm(module: torch.nn.Module) -> torch.nn.Module:
    """Running statistics of the actual activations: after two batch-2 steps from a fresh init a deep
    reparameterisable net (MobileOne) reaches logits of 1e10 in eval mode, where float32 export noise alone
    exceeds any absolute parity bound."""
    for layer in module.modules():
        if isinstance(layer, torch.nn.modules.batchnorm._BatchNorm):
            layer.reset_running_stats()
            layer.momentum = None  # a cumulative average over the batches below
    module.train()
    for seed in range(4):
        module(torch.randn(8, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed)))
    return module.eval()


@pytest.mark.slow
@pytest.mark.sweep
@pytest.mark.parametrize(
    ("arch", "kwargs"), TIMM_ARCHS + TORCHVISION_ARCHS, ids=lambda v: str(v) if v else ""
)
def test_edge_architecture_distils_exports_and_quantizes(arch, kwargs, tmp_path):
    torch.manual_seed(0)
    student, _ = build_from_config(ModelConfig(arch=arch, kwargs=kwargs), CLASSES)
    x = torch.randn(BATCH, 3, SIZE, SIZE)
    native = _native(arch, kwargs)
    native.load_state_dict(student.own_to_native(student.state_dict()))
    with torch.no_grad():
        features = student.eval().forward_features(x)
        assert features.shape == (BATCH, student.feature_dim)
        assert torch.equal(student.classifier(features), student(x))
        torch.testing.assert_close(student(x), native.eval()(x), rtol=1e-5, atol=1e-5)
    deployable = _cid_step(student)

    fp32 = export_onnx(deployable, (3, SIZE, SIZE), tmp_path / "model.onnx")
    images = np.random.default_rng(0).standard_normal((8, 3, SIZE, SIZE)).astype(np.float32)
    with torch.no_grad():
        scale = float(deployable(torch.from_numpy(images)).abs().max())
    # float32 export noise grows with the logits' size (MobileOne's reach the hundreds from a fresh init)
    parity = check_parity(deployable, fp32, images, max_abs_diff=max(1e-3, 1e-5 * scale), min_agreement=99.0)
    assert parity["n"] == 8

    int8 = tmp_path / "model.int8.onnx"
    quantize_static_int8(fp32, int8, images, QuantizeConfig())
    logits = run_onnx(make_session(int8), images[:3])
    assert logits.shape == (3, CLASSES) and np.isfinite(logits).all()

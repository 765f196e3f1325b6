"""The smallest model of each family exports to ONNX and predicts the same logits in onnxruntime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from cidpipe.models import build_model, model_info

FAMILY_REPRESENTATIVES = ["resnet8", "tinycnn", "wrn_16_1", "vgg8", "mobilenetv2", "shufflenetv1",
                          "shufflenetv2", "resnet10_cifar", "tv_mobilenet_v3_small"]


def _assert_onnx_matches(model: torch.nn.Module, path: Path, size: int) -> None:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = torch.randn(3, 3, size, size)  # another batch size than exported: the batch axis is dynamic
    (onnx_logits,) = session.run(["logits"], {"input": x.numpy()})
    with torch.no_grad():
        torch_logits = model(x).numpy()
    np.testing.assert_allclose(onnx_logits, torch_logits, atol=1e-4, rtol=1e-4)


# The TorchScript exporter is deprecated upstream but still the fast one; its warnings are expected here.
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("name", FAMILY_REPRESENTATIVES)
def test_onnx_logits_match_torch(name: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model(name, 10).eval()
    size = 64 if model_info(name).family == "torchvision" else 32
    path = tmp_path / f"{name}.onnx"
    torch.onnx.export(model, (torch.randn(2, 3, size, size),), str(path), dynamo=False,
                      input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    _assert_onnx_matches(model, path, size)


def test_dynamo_exporter_handles_channel_shuffle(tmp_path: Path) -> None:
    """The default (torch.export) exporter, on the model with the most reshaping: ShuffleNetV2's channel
    shuffle and channel split, with a dynamic batch axis."""
    torch.manual_seed(0)
    model = build_model("shufflenetv2", 10).eval()
    path = tmp_path / "shufflenetv2.onnx"
    batch = torch.export.Dim("batch", min=1, max=1024)
    torch.onnx.export(model, (torch.randn(2, 3, 32, 32),), str(path), dynamo=True, input_names=["input"],
                      output_names=["logits"], dynamic_shapes=({0: batch},), verbose=False)
    _assert_onnx_matches(model, path, 32)

"""InputAdapter: a teacher trained on other sizes and statistics sees the student's batch its own way."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F

from cidpipe.distill.config import DistillConfig
from cidpipe.distill.registry import build_distiller
from cidpipe.errors import ModelError
from cidpipe.models import build_model
from cidpipe.models.input_adapter import InputAdapter

STUDENT_STATS = ([0.5, 0.4, 0.3], [0.2, 0.25, 0.3])
TEACHER_STATS = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])


@pytest.fixture
def teacher() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("tinycnn", 6).eval()


def test_the_teacher_sees_the_image_resized_with_its_own_normalisation(teacher):
    adapted = InputAdapter(teacher, (24, 20), *STUDENT_STATS, *TEACHER_STATS).eval()
    image = torch.rand(2, 3, 12, 12)  # the raw image in [0, 1]
    mean_in, std_in = (torch.tensor(v).view(1, 3, 1, 1) for v in STUDENT_STATS)
    mean_out, std_out = (torch.tensor(v).view(1, 3, 1, 1) for v in TEACHER_STATS)
    student_view = (image - mean_in) / std_in
    teacher_view = (
        F.interpolate(image, size=(24, 20), mode="bilinear", align_corners=False) - mean_out
    ) / std_out
    torch.testing.assert_close(adapted.adapt(student_view), teacher_view, rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        torch.testing.assert_close(adapted(student_view), teacher(teacher_view), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(
            adapted.forward_features(student_view),
            teacher.forward_features(teacher_view),
            rtol=1e-5,
            atol=1e-5,
        )
    assert adapted.classifier is teacher.classifier
    assert (adapted.feature_dim, adapted.num_classes) == (teacher.feature_dim, teacher.num_classes)
    assert set(adapted.state_dict()) == {f"model.{k}" for k in teacher.state_dict()}


def test_a_grey_student_input_is_shown_to_an_rgb_teacher_as_r_g_b(teacher):
    adapted = InputAdapter(teacher, (16, 16), [0.5], [0.25], *TEACHER_STATS)
    grey = torch.randn(2, 1, 16, 16)
    raw = grey * 0.25 + 0.5
    mean_out, std_out = (torch.tensor(v).view(1, 3, 1, 1) for v in TEACHER_STATS)
    torch.testing.assert_close(adapted.adapt(grey), (raw.repeat(1, 3, 1, 1) - mean_out) / std_out)
    with pytest.raises(ModelError, match="cannot map 2 input channels to 3"):
        InputAdapter(teacher, (16, 16), [0.5, 0.5], [0.2, 0.2], *TEACHER_STATS)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_the_adapted_teacher_distils_and_exports(teacher, tmp_path):
    adapted = InputAdapter(teacher, (40, 40), *STUDENT_STATS, *TEACHER_STATS)
    torch.manual_seed(1)
    student = build_model("resnet8", 6)
    cfg = DistillConfig()
    distiller = build_distiller("cid", student, adapted, cfg, num_classes=6, epochs=cfg.cid.warmup_epochs + 1)
    out = distiller(torch.randn(4, 3, 16, 16), torch.tensor([0, 1, 0, 1]))
    out.loss.backward()
    assert torch.isfinite(out.loss)
    # Bilinear without antialiasing is one ONNX Resize node: the adapted teacher exports as is.
    path = tmp_path / "teacher.onnx"
    x = torch.randn(2, 3, 16, 16)
    torch.onnx.export(
        adapted.eval(),
        (x,),
        str(path),
        dynamo=False,
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
    )
    (got,) = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        None, {"input": x.numpy()}
    )
    with torch.no_grad():
        np.testing.assert_allclose(got, adapted(x).numpy(), rtol=1e-4, atol=1e-4)

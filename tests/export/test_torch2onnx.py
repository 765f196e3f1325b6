"""FP32 export: a single checked file, dynamic batch, metadata, parity with PyTorch, clear errors."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from cidpipe.errors import ParityError, UsageError
from cidpipe.export.metadata import make_metadata
from cidpipe.export.parity import check_parity
from cidpipe.export.torch2onnx import export_onnx, load_onnx_checked, read_onnx_metadata


def test_trained_net_exports_with_exact_parity(trained_net, digits, tmp_path):
    _, _, x_val, _ = digits
    meta = make_metadata(
        class_names=[str(i) for i in range(10)],
        input_shape=(1, 32, 32),
        mean=[0.3],
        std=[0.4],
        recipe_id="abc123",
        arch="smallconv",
        head="linear",
    )
    path = export_onnx(trained_net, (1, 32, 32), tmp_path / "student.onnx", metadata=meta)

    assert sorted(p.name for p in tmp_path.iterdir()) == ["student.onnx"]  # one file, no .data, no temp left
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    (inp,), (out,) = proto.graph.input, proto.graph.output
    assert (inp.name, out.name) == ("input", "logits")
    assert inp.type.tensor_type.shape.dim[0].dim_param == "batch"
    assert [d.dim_value for d in inp.type.tensor_type.shape.dim[1:]] == [1, 32, 32]
    assert proto.opset_import[0].version == 17

    result = check_parity(trained_net, path, x_val, max_abs_diff=1e-4, min_agreement=100.0)
    assert result["max_abs_diff"] <= 1e-4 and result["top1_agreement"] == 100.0 and result["n"] == len(x_val)

    read = read_onnx_metadata(path)
    assert read["class_names"] == [str(i) for i in range(10)]
    assert read["input_shape"] == [1, 32, 32] and read["mean"] == [0.3] and read["std"] == [0.4]
    assert (read["recipe_id"], read["arch"], read["head"]) == ("abc123", "smallconv", "linear")
    assert read["cidpipe_version"] and read["opset"] == 17 and read["exporter"] == "torchscript"
    assert (
        trained_net.training is False and next(trained_net.parameters()).requires_grad
    )  # caller's copy untouched


def test_cid_deployable_graph_keeps_softmax_and_dictionary_matmul(cid_model, digits, tmp_path):
    _, _, x_val, _ = digits
    path = export_onnx(cid_model, (1, 32, 32), tmp_path / "cid.onnx", target="trt")
    ops = [n.op_type for n in onnx.load(str(path)).graph.node]
    assert "Softmax" in ops and "MatMul" in ops and "Concat" in ops
    result = check_parity(cid_model, path, x_val, max_abs_diff=1e-4, min_agreement=100.0)
    assert result["top1_agreement"] == 100.0


def test_static_batch_export_and_parity_with_odd_sizes(trained_net, digits, tmp_path):
    _, _, x_val, _ = digits
    path = export_onnx(trained_net, (1, 32, 32), tmp_path / "static.onnx", dynamic_batch=False)
    dim0 = onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim[0]
    assert dim0.dim_value == 1
    assert check_parity(trained_net, path, x_val[:7], max_abs_diff=1e-4, min_agreement=100.0)["n"] == 7


def test_zoo_models_export_with_parity(tmp_path):
    models = pytest.importorskip("cidpipe.models")
    x = np.random.default_rng(0).standard_normal((4, 3, 32, 32)).astype(np.float32)
    for name in ("resnet8", "resnet8x4"):
        torch.manual_seed(0)
        model = models.build_model(name, num_classes=10).eval()
        path = export_onnx(model, (3, 32, 32), tmp_path / f"{name}.onnx")
        assert check_parity(model, path, x, max_abs_diff=1e-4, min_agreement=100.0)["top1_agreement"] == 100.0


def test_parity_failure_reports_numbers(trained_net, digits, tmp_path):
    _, _, x_val, _ = digits
    path = export_onnx(trained_net, (1, 32, 32), tmp_path / "a.onnx")
    other = type(trained_net)()  # different (untrained) weights: must be caught
    with pytest.raises(ParityError, match=r"max \|logit diff\| .* > 0.0001"):
        check_parity(other, path, x_val[:32], max_abs_diff=1e-4, min_agreement=100.0)


def test_not_an_onnx_model_is_a_usage_error(tmp_path):
    bogus = tmp_path / "model.onnx"
    bogus.write_text("this is not protobuf at all\n" * 20)
    with pytest.raises(UsageError, match=r"model.onnx is not an ONNX model: "):
        load_onnx_checked(bogus)
    with pytest.raises(UsageError, match="does not exist"):
        load_onnx_checked(tmp_path / "missing.onnx")


def test_export_error_leaves_no_file(tmp_path):
    class Broken(torch.nn.Module):
        def forward(self, x):
            return x.view(1, -1)  # bakes in batch 1: the smoke run at batch 3 must catch it

    from cidpipe.errors import ModelError

    with pytest.raises(ModelError):
        export_onnx(Broken(), (1, 4, 4), tmp_path / "broken.onnx")
    assert list(tmp_path.iterdir()) == []


def test_bad_input_shape_and_target(trained_net, tmp_path):
    with pytest.raises(UsageError, match="channels, height, width"):
        export_onnx(trained_net, (32, 32), tmp_path / "x.onnx")  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="unknown export target"):
        export_onnx(trained_net, (1, 32, 32), tmp_path / "x.onnx", target="coreml")

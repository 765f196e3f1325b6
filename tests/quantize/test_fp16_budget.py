"""FP16 is held to quantize.max_drop like INT8 (a walkthrough found the budget silently ignored for it):
measured on validation, recorded, and a miss is exit 6 with the numbers. Also what `cidpipe quantize`
says around it: a refused --qat, and a note when its options will not outlive the command."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from cidpipe.errors import ParityError
from cidpipe.quantize.fp16 import convert_fp16, measure_fp16
from tests.conftest import run_cli, tiny_recipe_dict


def _overflowing_model(path: Path) -> Path:
    """logits = [70000·x, 70000·x + 1]: class 1 always wins in FP32; in FP16 both overflow to inf and the
    tie goes to class 0, the real failure of a network with activations above 65504."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 1])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", 2])
    nodes = [
        helper.make_node("Mul", ["x", "scale"], ["a"]),
        helper.make_node("Add", ["a", "one"], ["b"]),
        helper.make_node("Concat", ["a", "b"], ["logits"], axis=1),
    ]
    inits = [helper.make_tensor("scale", TensorProto.FLOAT, [1], [70000.0]),
             helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0])]  # fmt: skip
    graph = helper.make_graph(nodes, "overflow", [x], [y], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_an_fp16_overflow_misses_the_budget(tmp_path: Path) -> None:
    fp32 = _overflowing_model(tmp_path / "model.onnx")
    fp16 = tmp_path / "model.fp16.onnx"
    convert_fp16(fp32, fp16)
    val = (np.full((20, 1), 10.0, np.float32), np.ones(20, np.int64))
    info = measure_fp16(fp32, fp16, val, max_drop=None)  # no budget: measured and recorded only
    assert (info["top1_fp32"], info["top1_fp16"], info["drop"], info["agreement"]) == (100.0, 0.0, 100.0, 0.0)
    with pytest.raises(ParityError, match=r"FP16 drop 100.00 points > budget 0.5 .*not all finite") as caught:
        measure_fp16(fp32, fp16, val, max_drop=0.5)
    assert caught.value.exit_code == 6
    assert measure_fp16(fp32, fp16, None, 0.5)["drop"] is None  # no validation split: left to the bench


def test_fp16_stage_records_its_numbers_refuses_qat_and_notes_overrides(tmp_path: Path) -> None:
    import yaml

    one_epoch = {"epochs": 1, "lr": 0.1}
    quantize = {"enabled": True, "mode": "fp16", "max_drop": 5}
    raw = tiny_recipe_dict(tmp_path / "runs", teacher={"train": one_epoch}, student=None,
                           export={"enabled": True}, quantize=quantize)
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(raw))
    proc = run_cli("run", str(path), "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "FP16: validation top-1" in proc.stderr
    from cidpipe.manifest import read_manifest

    info = read_manifest(tmp_path / "runs" / "tiny" / "quantize").metrics["variants"]["fp16"]
    assert info["drop"] == pytest.approx(info["top1_fp32"] - info["top1_fp16"]) and info["budget_met"]
    refused = run_cli("quantize", str(tmp_path / "runs" / "tiny"), "--qat")
    assert refused.returncode == 2
    lines = refused.stderr.strip().splitlines()
    assert lines == ["error: quantize.qat fine-tunes an INT8 model and this recipe makes fp16 only; use "
                     "--mode int8 (or quantize.modes: [int8, fp16]), or drop --qat"]  # nothing said before it
    same = run_cli("quantize", str(tmp_path / "runs" / "tiny"), "--max-drop", "5")  # what the recipe says
    assert same.returncode == 0 and "note:" not in same.stderr
    changed = run_cli("quantize", str(tmp_path / "runs" / "tiny"), "--max-drop", "7")
    assert changed.returncode == 0, changed.stderr[-2000:]
    assert ("note: --max-drop 7.0 applied to this command only; the next `cidpipe run` redoes the quantize "
            "stage from the recipe without them; to keep them, put them in the recipe (quantize.max_drop: "
            "7.0)") in " ".join(changed.stderr.split())

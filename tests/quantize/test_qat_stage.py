"""QAT in the quantize stage: ids and parents unchanged when it is off, refusals, what the manifest and the
report record, and (slow) a real pipeline run that fine-tunes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import yaml

from cidpipe.config import validate_recipe
from cidpipe.errors import ConfigError, ParityError
from cidpipe.gate.rundir import RunData
from cidpipe.quantize.budget import fit_accuracy_budget
from cidpipe.report.quantization import quantization_table
from cidpipe.stages.quantize import QUANTIZE
from tests.conftest import run_cli, tiny_recipe_dict

_QUANTIZE = {"enabled": True, "mode": "int8", "calibration": {"samples": 64}}


def _recipe(tmp_path: Path, **quantize):
    return validate_recipe(tiny_recipe_dict(tmp_path / "runs", export={"enabled": True},
                                            quantize={**_QUANTIZE, **quantize}))


def test_qat_off_leaves_the_stage_config_and_parents_as_before(tmp_path):
    recipe = _recipe(tmp_path)
    assert "qat" not in QUANTIZE.config(recipe)
    assert QUANTIZE.parents(recipe) == ("export",)
    assert "qat" not in _recipe(tmp_path, qat={"enabled": False, "epochs": 9}).quantize.model_dump()
    on = _recipe(tmp_path, qat={"enabled": "auto"})
    assert QUANTIZE.config(on)["qat"]["enabled"] == "auto"
    assert QUANTIZE.parents(on) == ("export", "student", "teacher")


def test_qat_without_a_student_is_refused(tmp_path):
    raw = tiny_recipe_dict(tmp_path / "runs", export={"enabled": True}, quantize={**_QUANTIZE,
                           "qat": {"enabled": True}})
    raw["student"] = None
    with pytest.raises(ConfigError, match="distils no student"):
        QUANTIZE.validate(validate_recipe(raw))
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump({**raw, "quantize": _QUANTIZE}))
    result = run_cli("quantize", str(path), "--qat")
    assert result.returncode == 2, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "distils no student" in last and "Traceback" not in result.stderr


def test_a_missed_budget_can_be_returned_instead_of_raised(tmp_path):
    kwargs = dict(top1_fp32=90.0, top1_int8=80.0, candidates=["a", "b"], max_drop=0.5, max_candidates=2,
                  max_float_nodes=2)
    quantize = lambda nodes: tmp_path / f"{len(nodes)}.onnx"  # noqa: E731
    with pytest.raises(ParityError, match="qat.enabled: auto"):
        fit_accuracy_budget(quantize, lambda path: 85.0, **kwargs)
    outcome = fit_accuracy_budget(quantize, lambda path: 85.0, raise_on_miss=False, **kwargs)
    assert not outcome.met and outcome.nodes_in_float == ["a", "b"] and "budget 0.5" in outcome.message


def test_a_miss_where_qat_cannot_run_does_not_suggest_turning_it_on(tmp_path):
    """auto on a teacher-only run: the budget miss says why QAT did not run, not "try qat.enabled: auto"."""
    from cidpipe.stages.quantize import qat_unavailable_message

    quantize = lambda nodes: tmp_path / f"{len(nodes)}.onnx"  # noqa: E731
    outcome = fit_accuracy_budget(quantize, lambda path: 85.0, top1_fp32=90.0, top1_int8=80.0,
                                  candidates=["a"], max_drop=0.5, max_candidates=1, max_float_nodes=1,
                                  raise_on_miss=False)  # fmt: skip
    assert "quantize.qat.enabled: auto" in outcome.message
    message = qat_unavailable_message(outcome.message, "auto")
    assert "enabled: auto," not in message and "a larger quantize.max_float_nodes, a looser" in message
    assert message.endswith("quantize.qat.enabled is auto but this recipe distils no student to fine-tune "
                            "(QAT needs the student and teacher stages)")


def test_report_shows_ptq_and_qat_side_by_side(tmp_path):
    variant = {"path": "qat", "top1_fp32": 90.0, "ptq": {"top1_int8": 88.0, "drop": 2.0},
               "qat": {"ran": True, "top1_int8": 89.8, "drop": 0.2, "scales": "recalibrated"}}
    run = RunData(tmp_path, {"quantize": {"metrics": {"variants": {"int8": variant, "fp16": {}}}}})
    table = quantization_table(run)
    assert table.rows == [["int8", "90.00", "88.00", "2.00", "89.80", "0.20", "recalibrated", "QAT"]]
    assert quantization_table(RunData(tmp_path, {})) is None


def test_auto_keeps_a_ptq_artifact_that_meets_the_budget(tmp_path):
    from cidpipe.quantize.qat_stage import ptq_then_qat

    recipe = _recipe(tmp_path, max_drop=0.5, qat={"enabled": "auto"})
    ptq = {"top1_fp32": 90.0, "top1_int8": 89.8, "drop": 0.2, "nodes_in_float": [], "budget_met": True}
    # Nothing else is touched when PTQ holds: no teacher, data or training is needed.
    info = ptq_then_qat(recipe, recipe.quantize, None, None, ptq, None, None, None, {}, None, "cpu", None)
    assert info["path"] == "ptq" and info["qat"] == {"ran": False, "reason": "PTQ met quantize.max_drop"}
    assert info["ptq"]["drop"] == 0.2 and info["drop"] == 0.2


@pytest.mark.slow
def test_pipeline_fine_tunes_and_records_both_paths(tmp_path):
    from cidpipe.export.ort_run import make_session, run_onnx
    from cidpipe.manifest import read_manifest
    from cidpipe.pipeline import run_pipeline
    from cidpipe.stages.contract import StageOptions

    recipe = _recipe(tmp_path, targets=["cpu", "trt"], qat={"enabled": True, "epochs": 1})
    run_pipeline(recipe, StageOptions(device="cpu"))
    stage = recipe.run_dir() / "quantize"
    manifest = read_manifest(stage)
    for key in ("int8", "int8-trt"):
        info = manifest.metrics["variants"][key]
        assert info["path"] == "qat" and info["qat"]["ran"]
        assert {"top1_int8", "drop"} <= set(info["ptq"])
        assert {"top1_trained", "top1_recalibrated", "scales", "drop"} <= set(info["qat"])
        assert info["drop"] == pytest.approx(info["top1_fp32"] - info["top1_int8"])
        assert 0.0 <= info["agreement"] <= 100.0  # of the shipped (fine-tuned) artifact
        path = manifest.artifact_path(stage, key)
        session = make_session(path)
        shape = [2, *session.get_inputs()[0].shape[1:]]
        logits = run_onnx(session, np.zeros(shape, np.float32))
        assert logits.shape == (2, 10)
        meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
        assert '"path": "qat"' in meta["quantization"]
    assert set(read_manifest(stage).parents) == {"export", "student", "teacher"}
    # The bench knows these graphs were trained after export (agreement reported, not held to the floor).
    from cidpipe.pipeline import read_parents
    from cidpipe.stages.bench import BENCH, artifacts_by_role

    specs = artifacts_by_role(recipe, read_parents(BENCH, recipe, None))["student"]
    retrained = {spec.name for spec in specs if spec.retrained}
    assert retrained == {"quantize/model.int8.onnx", "quantize/model.int8-trt.onnx"}


def test_auto_does_not_fine_tune_away_a_miss_that_is_only_this_cpus_kernels(tmp_path):
    """QAT simulates the exact Q/DQ arithmetic; when that already meets the budget the miss is kernel
    saturation (tests/quantize/test_int8_judging.py), so auto stops with the diagnosis instead of training."""
    from cidpipe.quantize.qat_stage import ptq_then_qat

    recipe = _recipe(tmp_path, max_drop=0.5, qat={"enabled": "auto"})
    ptq = {"top1_fp32": 90.0, "top1_int8": 88.0, "drop": 2.0, "nodes_in_float": ["conv"],
           "budget_met": False, "top1_int8_exact": 89.9,
           "budget_message": "INT8 drop 2.00 points > budget 0.5; but the graph's exact Q/DQ arithmetic "
           "drops only +0.10 points", "kernel_diagnosis": "the graph's exact ... +0.10 points"}
    with pytest.raises(ParityError, match=r"drops only \+0.10 points; quantization-aware fine-tuning skip"):
        ptq_then_qat(recipe, recipe.quantize, None, None, ptq, None, None, None, {}, None, "cpu", None)

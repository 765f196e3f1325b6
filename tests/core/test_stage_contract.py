"""The stage contract: one stage tuple, planned ids equal published ids, variants side by side.

Runs in process through the same ``run_pipeline`` / ``run_stage`` the CLI uses, on the tiny digits recipe,
so every stage of the pipeline really runs (training, ONNX export with parity, INT8 and FP16, the bench,
the gate) in a few seconds each.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import cidpipe
from cidpipe.config import validate_recipe
from cidpipe.manifest import read_manifest
from cidpipe.pipeline import STAGES, make_plan, run_pipeline
from cidpipe.stages.contract import StageOptions
from tests.conftest import tiny_recipe_dict

BENCH = {
    "enabled": True,
    "runs": 3,
    "min_seconds": 0.0,
    "warmup_runs": 1,
    "warmup_seconds": 0.0,
    "max_eval_samples": 64,
}
FULL = {
    "student": {"train": {"epochs": 2}},
    "teacher": {"train": {"epochs": 2}},
    "quantize": {"enabled": True, "modes": ["int8", "fp16"], "calibration": {"samples": 32}},
    "export": {"enabled": True, "parity": {"samples": 32}},
    "bench": BENCH,
    "gate": {"enabled": True, "min_top1": 5.0, "max_drop": 60.0},
    "report": {"enabled": False},
}


def _run_and_compare(raw: dict) -> dict:
    """Plan, run, and assert the plan told the truth: same ids, and cached exactly where it said so."""
    recipe = validate_recipe(raw)
    plan = make_plan(recipe)
    result = run_pipeline(recipe, StageOptions(device="cpu"))
    for step in plan:
        if step.action == "skip":
            assert step.name not in result.results
            continue
        stage = next(s for s in STAGES if s.name == step.name)
        outcome = result.results[stage.name]
        if not stage.addressed:
            continue
        published = read_manifest(stage.dir(recipe), stage.name)
        assert published.id == step.id, f"{stage.name}: planned {step.id[:12]}, published {published.id[:12]}"
        assert outcome.cached == (step.action == "cached"), f"{stage.name}: plan said {step.action}"
    return {step.name: step.action for step in plan}


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("contract")
    raw = tiny_recipe_dict(root / "runs", **FULL)
    actions = _run_and_compare(raw)
    return root, raw, actions


def test_plan_equals_run_for_the_full_pipeline_and_the_rerun(full_run):
    _root, raw, actions = full_run
    assert actions["teacher"] == actions["bench"] == "run" and actions["trt"] == "skip"
    again = _run_and_compare(raw)
    assert {again[s] for s in ("teacher", "student", "export", "quantize", "bench")} == {"cached"}


def test_plan_equals_run_with_export_disabled(full_run):
    """The stale-artifact bug: with export off, the bench must measure torch only, under the planned id."""
    root, raw, _ = full_run
    off = {**raw, "export": {**raw["export"], "enabled": False}}
    actions = _run_and_compare(off)
    assert actions["export"] == actions["quantize"] == "skip" and actions["bench"] == "run"
    bench = read_manifest(root / "runs" / "tiny" / "bench", "bench")
    assert set(bench.parents) == {"student", "teacher"}
    assert {row["format"] for row in bench.metrics["results"]} == {"torch"}


def test_plan_equals_run_without_a_student(full_run):
    root, raw, _ = full_run
    teacher_only = {**raw, "student": None, "quantize": {"enabled": False}}
    actions = _run_and_compare(teacher_only)
    assert actions["teacher"] == "cached" and actions["student"] == "skip" and actions["export"] == "run"
    export = read_manifest(root / "runs" / "tiny" / "export", "export")
    assert set(export.parents) == {"teacher"} and set(export.artifacts) == {"model"}
    assert export.artifacts["model"].role == "teacher"


def test_int8_and_fp16_side_by_side_benched_and_gated(full_run):
    root, raw, _ = full_run
    _run_and_compare(raw)  # back to the full recipe (cached stages stay cached)
    run_dir = root / "runs" / "tiny"
    quantize = read_manifest(run_dir / "quantize", "quantize")
    assert {key: art.format for key, art in quantize.artifacts.items()} == {
        "int8": "onnx-int8",
        "fp16": "onnx-fp16",
    }
    assert set(quantize.metrics["variants"]) == {"int8", "fp16"}
    rows = read_manifest(run_dir / "bench", "bench").metrics["results"]
    student_formats = {row["format"] for row in rows if row["role"] == "student"}
    assert student_formats == {"torch", "onnx-fp32", "onnx-int8", "onnx-fp16"}
    gate = json.loads((run_dir / "gate" / "gate.json").read_text())
    names = {check["name"] for check in gate["checks"]}
    assert {"min_top1[onnx-int8@local]", "min_top1[onnx-fp16@local]"} <= names, names


def test_the_teacher_is_benched_like_the_student_against_its_own_predictions(full_run):
    root, raw, _ = full_run
    _run_and_compare(raw)
    rows = read_manifest(root / "runs" / "tiny" / "bench", "bench").metrics["results"]
    teacher = {row["format"]: row for row in rows if row["role"] == "teacher"}
    assert set(teacher) == {"torch", "onnx-fp32"}
    assert teacher["torch"]["agreement"] == 100.0  # its own reference, not the student's
    assert teacher["onnx-fp32"]["status"] == "pass" and teacher["onnx-fp32"]["latency"]["p50_ms"] > 0
    gate = json.loads((root / "runs" / "tiny" / "gate" / "gate.json").read_text())
    assert not [c for c in gate["checks"] if "teacher" in c["name"]], "the teacher is compared, not gated"


def test_trt_appears_only_in_the_trt_stage_module():
    stages = Path(cidpipe.__file__).parent / "stages"
    hits = [p.name for p in stages.glob("*.py") if '"trt"' in p.read_text()]
    assert hits == ["trt.py"], hits


def test_one_stage_tuple_names_every_stage_directory():
    names = [stage.name for stage in STAGES]
    assert len(set(names)) == len(names) and len({s.verb for s in STAGES}) == len(STAGES)
    # No other module spells the pipeline's stages out as a sequence.
    pattern = re.compile(r"""["']teacher["'],\s*["']student["'],\s*["'](export|quantize)["']""")
    package = Path(cidpipe.__file__).parent
    offenders = [str(p.relative_to(package)) for p in package.rglob("*.py") if pattern.search(p.read_text())]
    assert offenders == [], offenders

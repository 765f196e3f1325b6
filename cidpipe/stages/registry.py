"""The pipeline's stages in order. Each stage module owns its planning (id) and running."""

from __future__ import annotations

from cidpipe.config import Recipe
from cidpipe.gate import load_gate_config
from cidpipe.pipeline import StageSpec
from cidpipe.stages import bench, distill, export, gate, quantize, report, train, trt
from cidpipe.stages.common import StageOptions


def _has_student(recipe: Recipe) -> bool:
    return recipe.student is not None and recipe.distill.enabled


def _run_gate(recipe: Recipe, options: StageOptions) -> gate.GateOutputs:
    config = load_gate_config(recipe.gate.model_dump(mode="json", exclude_none=True))
    return gate.run_gate(recipe.run_dir(), config, baseline=recipe.gate.baseline)


PIPELINE: list[StageSpec] = [
    StageSpec("train", lambda r: True, lambda r, ids: train.teacher_work(r), train.run_train),
    StageSpec(
        "distill", _has_student, lambda r, ids: distill.student_work(r, ids["train"]), distill.run_distill
    ),
    StageSpec(
        "export",
        lambda r: r.export.enabled,
        lambda r, ids: export.export_work(r, ids[export.model_stage(r)]),
        export.run_export,
    ),
    StageSpec(
        "quantize",
        lambda r: r.quantize.enabled and r.export.enabled,
        lambda r, ids: quantize.quantize_work(r, ids["export"]),
        quantize.run_quantize,
    ),
    StageSpec(
        "trt",
        lambda r: r.export.enabled and "trt" in r.export.targets,
        lambda r, ids: trt.trt_work(r, ids[trt.source_verb(r)]),
        trt.run_trt,
    ),
    StageSpec(
        "bench",
        lambda r: r.bench.enabled,
        lambda r, ids: bench.bench_work(r, bench.planned_parents(ids, r)),
        bench.run_bench,
    ),
    StageSpec("gate", lambda r: r.gate.enabled, lambda r, ids: None, _run_gate),
    StageSpec("report", lambda r: r.report.enabled, lambda r, ids: None, report.run_report),
]

"""The ``bench`` stage: accuracy and latency of every artifact of the run on every requested device.

``local`` runs in this process (torch and ONNX Runtime share the latency protocol of the device runtime);
other devices get the torch-free runtime over SSH with the same protocol and the same evaluation set.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from cidpipe.atomic import atomic_write_text
from cidpipe.bench.local import bench_local
from cidpipe.bench.result import ArtifactSpec, BenchResult
from cidpipe.bench.table import print_results, results_to_json
from cidpipe.config import Recipe
from cidpipe.data.registry import load_dataset
from cidpipe.export.parity import torch_logits
from cidpipe.manifest import StageWork
from cidpipe.stages.bench_artifacts import run_artifacts
from cidpipe.stages.bench_remote import bench_remote
from cidpipe.stages.common import StageOptions, StageResult, discard_on_error, reuse_if_cached, stage_dir


def bench_work(recipe: Recipe, parents: dict[str, str]) -> StageWork:
    return StageWork(
        stage_dir(recipe, "bench"),
        "bench",
        recipe.bench.model_dump(mode="json"),
        parents,
        recipe=recipe.name,
        recipe_id=recipe.recipe_id(),
    )


def planned_parents(ids: dict[str, str], recipe: Recipe) -> dict[str, str]:
    """Parent ids as the pipeline plans them (stage dir name -> id), before anything has run."""
    names = {
        "train": "teacher",
        "distill": "student",
        "export": "export",
        "quantize": "quantize",
        "trt": "trt",
    }
    from cidpipe.stages.export import model_stage

    keep = [model_stage(recipe), "export", "quantize", "trt"]
    return {names[verb]: ids[verb] for verb in keep if verb in ids}


def run_bench(recipe: Recipe, options: StageOptions) -> StageResult:
    artifacts, parents = run_artifacts(recipe)
    work = bench_work(recipe, parents)
    cached = reuse_if_cached(work, options)
    if cached:
        return cached
    cfg = recipe.bench
    bundle = load_dataset(recipe.data)
    x, y = bundle.test.to_numpy(max_samples=cfg.max_eval_samples)
    reference = artifacts[0].module
    ref_pred = torch_logits(reference, x).argmax(1)
    reference_top1 = float((ref_pred == y).mean() * 100.0)
    results: list[BenchResult] = []
    with discard_on_error(work.open()), tempfile.TemporaryDirectory(prefix="cidpipe-bench-") as tmp:
        eval_npz = Path(tmp) / "eval.npz"
        np.savez(eval_npz, x=x, y=y, ref_pred=ref_pred)
        for device_name in cfg.devices:
            if device_name == "local":
                results += bench_local(artifacts, x, y, ref_pred, cfg, device=options.device)
            else:
                results += bench_remote(device_name, _file_artifacts(artifacts), eval_npz, recipe)
        print_results(results, options.out, cfg.cov_warning)
        rows = results_to_json(results)
        atomic_write_text(work.path("results.json"), _json(rows))
        work.add_artifact("results", "results.json")
        metrics = {
            "results": rows,
            "reference": {"format": "torch", "top1": reference_top1, "n": int(len(y))},
        }
        manifest = work.commit(metrics=metrics, device=options.device)
    return StageResult(work.stage, work.stage_dir, manifest, cached=False)


def _file_artifacts(artifacts: list[ArtifactSpec]) -> list[ArtifactSpec]:
    return [spec for spec in artifacts if spec.path is not None]


def _json(rows) -> str:
    import json

    return json.dumps(rows, indent=2) + "\n"

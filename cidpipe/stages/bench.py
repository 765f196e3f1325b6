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
from cidpipe.bench.result import DEVICE_FAILURE, ArtifactSpec, BenchResult
from cidpipe.bench.table import print_results, results_to_json
from cidpipe.config import Recipe
from cidpipe.data.registry import load_dataset
from cidpipe.errors import DeviceError
from cidpipe.export.parity import torch_logits
from cidpipe.manifest import StageWork
from cidpipe.stages.bench_artifacts import run_artifacts
from cidpipe.stages.bench_remote import bench_remote
from cidpipe.stages.common import StageOptions, StageResult, discard_on_error, reuse_if_cached, stage_dir

# Keys of the bench section that decide what the exit status says, not what is measured: toggling them must
# not invalidate a finished bench (and adding them left the ids of existing benches unchanged).
_NOT_MEASURED = {"tolerate_device_failures"}


def bench_work(recipe: Recipe, parents: dict[str, str]) -> StageWork:
    return StageWork(
        stage_dir(recipe, "bench"),
        "bench",
        recipe.bench.model_dump(mode="json", exclude=_NOT_MEASURED),
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
    from cidpipe.preflight import check_devices

    check_devices(recipe)  # an unknown device or a broken inventory fails before anything is written
    artifacts, parents = run_artifacts(recipe)
    work = bench_work(recipe, parents)
    cfg = recipe.bench
    cached = reuse_if_cached(work, options)
    if cached:
        old_rows = cached.manifest.metrics.get("results") or []
        failed = device_failures(old_rows)
        if not failed:
            return cached
        if cfg.tolerate_device_failures and len(failed) < len(old_rows):
            raise_for_devices(cached.manifest, True, work.stage_dir, options)  # only warns: tolerated
            return cached
        # Device failures are usually transient (a board that was off): a rerun measures again instead of
        # replaying the old failure, or worse, reporting it as a green "cached".
        options.out.print("[yellow]rerunning[/] bench: the cached one has rows that failed on a device")
    bundle = load_dataset(recipe.data)
    x, y = bundle.test.to_numpy(max_samples=cfg.max_eval_samples)
    check_onnx_artifacts(artifacts, tuple(x.shape[1:]), bundle.num_classes)
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
    # Published first, failed second: the rows are worth keeping (what did run, and exactly which device
    # failed and why are in results.json), so the stage is committed; but a bench with device failures must
    # not look successful, so the command still exits non-zero after publishing (see raise_for_devices).
    raise_for_devices(manifest, cfg.tolerate_device_failures, work.stage_dir, options)
    return StageResult(work.stage, work.stage_dir, manifest, cached=False)


class BenchDeviceFailures(DeviceError):
    """Rows failed on a device; the bench stage was published anyway and is attached for --json output."""

    def __init__(self, message: str, manifest) -> None:
        super().__init__(message)
        self.manifest = manifest


def device_failures(rows: list[dict]) -> list[dict]:
    return [row for row in rows if row.get("status") == "failed" and row.get("failure") == DEVICE_FAILURE]


def raise_for_devices(manifest, tolerate: bool, published: Path, options: StageOptions) -> None:
    """DeviceError (exit 8) when rows failed because of a device, unless tolerated and something ran."""
    rows = manifest.metrics["results"]
    failed = device_failures(rows)
    if not failed:
        return
    devices = ", ".join(dict.fromkeys(row["device"] for row in failed))
    first = failed[0].get("error") or "no reason given"
    if len(failed) == len(rows):
        raise BenchDeviceFailures(
            f"every bench row failed on its device ({devices}): {first}; fix the device and rerun "
            f"(rows kept in {published}/results.json)",
            manifest,
        )
    if tolerate:
        options.out.print(
            f"[yellow]warning[/]: {len(failed)} of {len(rows)} bench rows failed on {devices} "
            "(tolerated: bench.tolerate_device_failures)"
        )
        return
    raise BenchDeviceFailures(
        f"{len(failed)} of {len(rows)} bench rows failed on {devices}: {first}; fix the device, or pass "
        f"--tolerate-device-failures to accept the other rows (kept in {published}/results.json)",
        manifest,
    )


def check_onnx_artifacts(artifacts: list[ArtifactSpec], image_shape: tuple[int, ...], classes: int) -> None:
    """Every ONNX artifact takes the evaluation images and gives one logit per class, else ModelError (4).

    Checked before anything is measured: an artifact of another model would otherwise become rows of
    onnxruntime shape errors (or, worse, plausible numbers for the wrong classes).
    """
    from cidpipe.export.ort_run import check_onnx_io

    for spec in artifacts:
        if spec.path is not None and spec.format.startswith("onnx"):
            check_onnx_io(spec.path, image_shape, classes)


def _file_artifacts(artifacts: list[ArtifactSpec]) -> list[ArtifactSpec]:
    return [spec for spec in artifacts if spec.path is not None]


def _json(rows) -> str:
    import json

    return json.dumps(rows, indent=2) + "\n"

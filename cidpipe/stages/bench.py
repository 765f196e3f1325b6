"""The ``bench`` stage: accuracy and latency of every model artifact of the run on every requested device.

What is measured comes from the parent manifests, never from file names: each artifact's format (a row of
cidpipe/export/formats.py) names the backends that can run it, and the recipe's ``bench.backends`` picks
among them. The teacher is measured like the student (torch, and its ONNX when exported), against its own
torch predictions, so later readers can state student-vs-teacher speed and size.

Rows are keyed by (artifact, device, backend, batch size). The stage id does not include the device list:
a later ``bench --device board`` measures the board and keeps the local rows of the same artifacts, so
both live in one manifest and the gate sees both. ``local`` runs in this process (torch and ONNX Runtime
share the latency protocol of the device runtime); other devices get the torch-free runtime over SSH.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from rich.markup import escape

from cidpipe.config import Recipe
from cidpipe.errors import DeviceError, ParityError, UsageError
from cidpipe.manifest import Manifest, StageWork, read_manifest
from cidpipe.stages.contract import Built, Parent, Stage, StageOptions
from cidpipe.stages.export import model_stage

# Keys of the bench section that say where to measure or how to judge, not what a row measures: a row holds
# its own device (so the inventory that located it is not part of the id), and toggling tolerance must not
# invalidate a finished bench.
_NOT_IN_ID = {"tolerate_device_failures", "devices", "inventory"}


def benches_teacher(recipe: Recipe) -> bool:
    return recipe.bench.teacher and model_stage(recipe) == "student"


class BenchStage(Stage):
    name, verb = "bench", "bench"

    def enabled(self, recipe: Recipe) -> bool:
        return recipe.bench.enabled

    def parents(self, recipe: Recipe) -> tuple[str, ...]:
        from cidpipe.pipeline import STAGES

        names = [model_stage(recipe)] + (["teacher"] if benches_teacher(recipe) else [])
        return tuple(names + [s.name for s in STAGES if s.makes_deployables and s.enabled(recipe)])

    def config(self, recipe: Recipe) -> dict[str, Any]:
        return recipe.bench.model_dump(mode="json", exclude=_NOT_IN_ID)

    def recipe_view(self, config: dict[str, Any]) -> dict[str, Any]:
        return {"bench": config}

    def validate(self, recipe: Recipe) -> None:
        from cidpipe.preflight import check_devices

        check_devices(recipe)  # an unknown device or a broken inventory fails before anything is written

    def reusable(self, recipe: Recipe, manifest: Manifest) -> tuple[bool, str]:
        rows = manifest.metrics.get("results") or []
        missing = [d for d in recipe.bench.devices if d not in _devices_of(rows)]
        if missing:
            return False, f"not measured on {', '.join(missing)} yet"
        failed = device_failures([row for row in rows if row.get("device") in recipe.bench.devices])
        if failed and not (recipe.bench.tolerate_device_failures and len(failed) < len(rows)):
            # Device failures are usually transient (a board that was off): measure again rather than
            # replay the old failure, or worse, report it as a green "cached".
            return False, "rows failed on a device last time"
        return True, "cached"

    def on_cached(self, recipe: Recipe, manifest: Manifest, options: StageOptions) -> None:
        # A reused bench with tolerated device failures still says so (reusable refused the untolerated).
        raise_for_devices(manifest, recipe.bench.tolerate_device_failures, self.dir(recipe), options)

    def build(
        self, recipe: Recipe, work: StageWork, inputs: dict[str, Parent], options: StageOptions
    ) -> Built:
        rows = kept_rows(self.dir(recipe), work.id, recipe.bench.devices, options)
        measured, reference = measure(recipe, inputs, options)
        rows += measured
        work.path("results.json").write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
        work.add_artifact("results", "results.json")
        metrics = {"results": rows, "reference": reference, "devices": sorted(_devices_of(rows))}
        tolerate = recipe.bench.tolerate_device_failures
        # Published first, failed second: the rows are worth keeping (what did run, and exactly which device
        # failed and why, are in results.json), but a bench with device failures must not look successful.
        return Built(
            metrics,
            device=options.device,
            after_publish=lambda manifest: raise_for_devices(manifest, tolerate, self.dir(recipe), options),
        )


def kept_rows(bench_dir: Path, bench_id: str, devices: list[str], options: StageOptions) -> list[dict]:
    """The rows of the finished bench of the same artifacts for devices not measured this time."""
    try:
        previous = read_manifest(bench_dir, "bench")
    except UsageError:  # no bench yet
        return []
    if previous.id != bench_id:  # other artifacts or settings: its rows describe something else
        others = sorted(_devices_of(previous.metrics.get("results") or []) - set(devices))
        if others:  # say so: the gate would otherwise fail later on rows that silently went missing
            options.log.print(
                f"[yellow]bench[/]: not keeping the earlier rows of {', '.join(others)}: they measured other "
                "artifacts or bench settings (runs, batch sizes, ...); bench those devices again with the "
                "same settings to gate them"
            )
        return []
    old_rows = [row for row in previous.metrics.get("results") or [] if row.get("device") not in devices]
    # A row that failed because its device was unreachable is not a measurement worth keeping: dropping it
    # means a later bench of another device does not fail for a board that was off last time.
    failed = device_failures(old_rows)
    kept = [row for row in old_rows if row not in failed]
    if kept:
        others = ", ".join(sorted(_devices_of(kept)))
        options.log.print(f"bench: keeping the earlier rows of {others} (same artifacts and settings)")
    return kept


def measure(recipe: Recipe, inputs: dict[str, Parent], options: StageOptions) -> tuple[list[dict], dict]:
    """Rows for every artifact on every requested device, and the deployed model's torch top-1."""
    import numpy as np

    from cidpipe.bench.local import bench_local
    from cidpipe.bench.remote_rows import bench_remote
    from cidpipe.bench.table import print_results, results_to_json
    from cidpipe.data.registry import load_dataset
    from cidpipe.export.parity import torch_logits
    from cidpipe.stages.train import teacher_data

    cfg = recipe.bench
    groups = artifacts_by_role(recipe, inputs)

    def say(what: str) -> None:  # one line per measurement as it starts: a big model's bench takes minutes
        options.log.print(f"[dim]bench:[/] {escape(what)}", highlight=False, soft_wrap=True)

    results = []
    reference: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="cidpipe-bench-") as tmp:
        for role, specs in groups.items():  # each role against its own torch model's predictions
            # The same test images as each model sees them (the teacher may take its own size and stats).
            bundle = load_dataset(teacher_data(recipe) if role == "teacher" else recipe.data)
            x, y = bundle.test.evenly_spaced(cfg.max_eval_samples).to_numpy()
            check_onnx_artifacts(specs, tuple(x.shape[1:]), bundle.num_classes)
            ref_pred = torch_logits(specs[0].module, x).argmax(1)
            if role == model_stage(recipe):
                reference = {
                    "format": "torch",
                    "top1": float((ref_pred == y).mean() * 100.0),
                    "n": int(len(y)),
                }
            eval_npz = Path(tmp) / f"eval-{role}.npz"
            np.savez(eval_npz, x=x, y=y, ref_pred=ref_pred)
            for device_name in cfg.devices:
                if device_name == "local":
                    rows = bench_local(specs, x, y, ref_pred, cfg, device=options.device, announce=say)
                else:
                    rows = bench_remote(
                        device_name, [s for s in specs if s.path is not None], eval_npz, recipe, say
                    )
                for row in rows:
                    row.role = role
                results += rows
    print_results(results, options.log, cfg.cov_warning)
    rows = results_to_json(results)
    for row in flag_slower_than_fp32(rows):
        options.log.print(
            f"[yellow]warning[/]: {row['artifact']} ({row['format']}) is slower than the FP32 ONNX on "
            f"{row['device']} at batch {row['batch_size']}: quantization costs time here, not saves it"
        )
    return rows, reference


def flag_slower_than_fp32(rows: list[dict]) -> list[dict]:
    """Mark (``slower_than_fp32``) and return the INT8/FP16 rows whose p50 exceeds the FP32 ONNX row of the
    same model, device and batch size: a quantized model that is slower where it runs is a finding."""
    fp32 = {
        (row.get("role"), row.get("device"), row.get("batch_size")): row
        for row in rows
        if row.get("format") == "onnx-fp32" and row.get("status") == "pass"
    }
    slower = []
    for row in rows:
        base = fp32.get((row.get("role"), row.get("device"), row.get("batch_size")))
        if base is None or row.get("format") not in ("onnx-int8", "onnx-fp16") or row.get("status") != "pass":
            continue
        mine, theirs = (row.get("latency") or {}).get("p50_ms"), (base.get("latency") or {}).get("p50_ms")
        if mine and theirs and mine > theirs:
            row["slower_than_fp32"] = True
            slower.append(row)
    return slower


def artifacts_by_role(recipe: Recipe, inputs: dict[str, Parent]) -> dict[str, list]:
    """role -> [its torch module (the reference) first, then every file artifact a bench backend runs]."""
    from cidpipe.bench.result import ArtifactSpec
    from cidpipe.export.formats import get_format
    from cidpipe.modelio import load_stage_model

    groups: dict[str, list[ArtifactSpec]] = {}
    for role in dict.fromkeys([model_stage(recipe)] + (["teacher"] if benches_teacher(recipe) else [])):
        module, _manifest = load_stage_model(inputs[role].dir)
        groups[role] = [ArtifactSpec(f"{role} (torch)", "torch", module=module, role=role)]
    for stage, parent in inputs.items():
        for key, art in parent.manifest.artifacts.items():
            if art.format in (None, "torch") or art.role not in groups:
                continue
            backends = [b for b in get_format(art.format).backends if b in recipe.bench.backends]
            if not backends:
                continue
            path = parent.manifest.artifact_path(parent.dir, key)
            variant = (parent.manifest.metrics.get("variants") or {}).get(key) or {}
            groups[art.role].append(
                ArtifactSpec(
                    f"{stage}/{path.name}", art.format, path=path, backend=backends[0], role=art.role,
                    retrained=stage == "quantize" and variant.get("path") == "qat",
                    variant=key.split("-", 1)[1] if stage == "quantize" and "-" in key else None,
                )
            )
    return groups


class BenchDeviceFailures(DeviceError):
    """Rows failed on a device; the bench stage was published anyway and is attached for --json output."""

    def __init__(self, message: str, manifest) -> None:
        super().__init__(message)
        self.manifest = manifest


def _devices_of(rows: list[dict]) -> set[str]:
    return {str(row.get("device")) for row in rows}


def device_failures(rows: list[dict]) -> list[dict]:
    from cidpipe.bench.result import DEVICE_FAILURE

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
        options.log.print(
            f"[yellow]warning[/]: {len(failed)} of {len(rows)} bench rows failed on {devices} "
            "(tolerated: bench.tolerate_device_failures)"
        )
        return
    raise BenchDeviceFailures(
        f"{len(failed)} of {len(rows)} bench rows failed on {devices}: {first}; fix the device, or pass "
        f"--tolerate-device-failures to accept the other rows (kept in {published}/results.json)",
        manifest,
    )


class BenchArtifactFailures(ParityError):
    """Rows of the deployed model did not pass (exported-but-failed, or the artifact would not run)."""

    def __init__(self, message: str, metrics: dict) -> None:
        super().__init__(message)
        self.result = metrics  # --json: the published rows ride on the error reply


def raise_for_failed_artifacts(recipe: Recipe, manifest: Manifest) -> None:
    """ParityError (exit 6) when a row of the deployed model is not ``pass`` for a reason other than its
    device (those are exit 8, raised when the stage is published).

    Used where no gate will judge the rows: ``cidpipe bench``, and ``cidpipe run`` with the gate disabled.
    With a gate, the gate fails those rows (exit 1) after the report is written, which a user wants to see.
    """
    from cidpipe.bench.result import DEVICE_FAILURE

    role = model_stage(recipe)
    rows = [row for row in manifest.metrics.get("results") or [] if row.get("role", role) == role
            and row.get("status") != "pass" and row.get("failure") != DEVICE_FAILURE]
    if not rows:
        return
    first = rows[0]
    where = (f"{first.get('artifact')} ({first.get('format')}, {first.get('device')}, "
             f"batch {first.get('batch_size')})")
    raise BenchArtifactFailures(
        f"{len(rows)} bench row{'s' * (len(rows) > 1)} of the {role} did not pass; {where} is "
        f"{first.get('status')}: {first.get('error') or 'no reason given'} (rows kept in "
        f"{recipe.run_dir() / 'bench'}/results.json)",
        manifest.metrics,
    )


def check_onnx_artifacts(artifacts: list, image_shape: tuple[int, ...], classes: int) -> None:
    """Every ONNX artifact takes the evaluation images and gives one logit per class, else ModelError (4).

    Checked before anything is measured: an artifact of another model would otherwise become rows of
    onnxruntime shape errors (or, worse, plausible numbers for the wrong classes).
    """
    from cidpipe.export.ort_run import check_onnx_io

    for spec in artifacts:
        if spec.path is not None and spec.format.startswith("onnx"):
            check_onnx_io(spec.path, image_shape, classes)


BENCH = BenchStage()


def run_bench(recipe: Recipe, options: StageOptions):
    """Bench the run's artifacts on the recipe's devices (keeping other devices' rows of the same bench)."""
    from cidpipe.pipeline import run_stage

    return run_stage(BENCH, recipe, options)

"""`cidpipe compare`: one teacher, then every (method, seed) student under the same budget, as a table.

Layout: the teacher is the recipe's own train stage (runs/<name>/teacher, shared with `cidpipe run`); each
student is its own cached, resumable distill stage in runs/<name>/compare/<method>-s<seed>/student (a copy
of the recipe named ``<method>-s<seed>`` whose out_dir is runs/<name>/compare). Linear probes are cached as
JSON next to the student, keyed by the model's manifest id. An interrupted comparison continues where it
stopped when rerun.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from cidpipe.atomic import atomic_write_text
from cidpipe.config import Recipe
from cidpipe.errors import ConfigError, TrainingDiverged, UsageError
from cidpipe.manifest import Manifest
from cidpipe.modelio import load_stage_model
from cidpipe.stages.contract import StageOptions, StageResult
from cidpipe.study.probe import ProbeSettings, linear_probe, resolve_probe_dataset

DEFAULT_METHODS = ("ce", "kd", "fitnet", "dkd", "cid")


@dataclass
class RunRecord:
    """One trained model of the comparison and the numbers the table shows (percent)."""

    method: str  # "teacher" for the teacher row
    seed: int
    stage_dir: Path
    manifest_id: str
    cached: bool
    metrics: dict[str, float] = field(default_factory=dict)
    train_seconds: float | None = None
    failure: str | None = None  # a diverged cell: kept in the table as such, not silently dropped


@dataclass
class Comparison:
    recipe: Recipe
    methods: list[str]
    seeds: list[int]
    probes: list[str]
    teacher: RunRecord
    students: list[RunRecord]
    wall_seconds: float
    command: str

    @property
    def biased(self) -> bool:
        return self.recipe.data.bias is not None

    def metric_columns(self) -> list[str]:
        columns = ["aligned", "unbiased", "conflicting", "gap"] if self.biased else ["test_top1"]
        return columns + [f"probe:{name}" for name in self.probes]

    def records(self, method: str) -> list[RunRecord]:
        """The finished students of ``method`` (diverged cells excluded; see ``failures``)."""
        return [r for r in self.students if r.method == method and r.failure is None]

    def failures(self, method: str) -> list[RunRecord]:
        return [r for r in self.students if r.method == method and r.failure is not None]

    def to_json(self) -> dict[str, Any]:
        def row(r: RunRecord) -> dict[str, Any]:
            return {"method": r.method, "seed": r.seed, "stage_dir": str(r.stage_dir), "id": r.manifest_id,
                    "cached": r.cached, "train_seconds": r.train_seconds, "metrics": r.metrics,
                    "failure": r.failure}

        return {"recipe": self.recipe.name, "methods": self.methods, "seeds": self.seeds,
                "probes": self.probes, "teacher": row(self.teacher),
                "students": [row(r) for r in self.students], "wall_seconds": self.wall_seconds,
                "command": self.command}


def comparison_dir(recipe: Recipe) -> Path:
    return recipe.run_dir() / "compare"


def student_recipe(recipe: Recipe, method: str, seed: int) -> Recipe:
    """The recipe of one comparison cell: same data, student and budget; one method, one seed."""
    if recipe.student is None:
        raise ConfigError("the recipe has no 'student' section; `cidpipe compare` needs student.model.arch")
    cell = recipe.model_copy(deep=True)
    cell.name = f"{method}-s{seed}"
    cell.out_dir = comparison_dir(recipe)
    cell.distill.method = method
    cell.student.train.seeds = [seed]
    return cell


def check_methods(methods: list[str]) -> list[str]:
    from cidpipe.distill.registry import list_methods

    known = list_methods()
    unknown = [m for m in methods if m not in known]
    if unknown:
        raise UsageError(f"--methods: unknown method '{unknown[0]}'; choose from {', '.join(known)}")
    if not methods:
        raise UsageError("--methods needs at least one method, e.g. --methods kd,cid")
    return list(dict.fromkeys(methods))


def metrics_of(manifest: Manifest) -> dict[str, float]:
    """Top-1 numbers a comparison reads from a train/distill manifest (first seed = the published one)."""
    metrics = manifest.metrics or {}
    out = {"test_top1": float(metrics["test_top1"])}
    for key, value in (metrics.get("bias") or {}).items():
        out[key] = float(value)
    return out


def cached_probe(stage: StageResult, dataset: str, settings: ProbeSettings, device: str) -> float:
    """Probe accuracy, recomputed only when the model (id, weights) or the probe settings changed."""
    path = stage.stage_dir.parent / "probe" / f"{dataset}.json"
    # The weights' hash, not only the stage id: a --force retrain keeps the id but may change the weights.
    weights = stage.manifest.artifacts["model"].sha256 if "model" in stage.manifest.artifacts else None
    key = {"model_id": stage.manifest.id, "weights_sha256": weights, "dataset": dataset,
           "settings": settings.as_dict()}
    if path.is_file():
        stored = json.loads(path.read_text())
        if stored.get("key") == key:
            return float(stored["result"]["top1"])
    module, manifest = load_stage_model(stage.stage_dir)
    result = linear_probe(module, manifest.model or {}, dataset, device=device, settings=settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps({"key": key, "result": result}, indent=2))
    return float(result["top1"])


def _record(method: str, seed: int, stage: StageResult, probes: list[str], settings: ProbeSettings,
            device: str) -> RunRecord:
    metrics = metrics_of(stage.manifest)
    for dataset in probes:
        metrics[f"probe:{dataset}"] = cached_probe(stage, dataset, settings, device)
    seconds = (stage.manifest.metrics or {}).get("train_seconds")
    return RunRecord(method, seed, stage.stage_dir, stage.manifest.id, stage.cached, metrics,
                     float(seconds) if seconds is not None else None)


def run_comparison(
    recipe: Recipe,
    *,
    methods: list[str] | tuple[str, ...] = DEFAULT_METHODS,
    seeds: list[int] | tuple[int, ...] = (0, 1, 2),
    probes: list[str] | tuple[str, ...] = (),
    options: StageOptions | None = None,
    probe_settings: ProbeSettings | None = None,
    out: Path | None = None,
    command: str | None = None,
) -> Comparison:
    """Train (or reuse) the teacher and every method x seed student; optionally write the Markdown table."""
    from cidpipe.stages.distill import run_distill
    from cidpipe.stages.train import run_train
    from cidpipe.study.markdown import render_comparison, write_section

    options = options or StageOptions()
    console: Console = options.log
    methods = check_methods(list(methods))
    seeds = list(dict.fromkeys(int(s) for s in seeds))
    if not seeds:
        raise UsageError("--seeds needs at least one seed, e.g. --seeds 0,1,2")
    probe_names = [resolve_probe_dataset(p) for p in probes]
    settings = probe_settings or ProbeSettings()
    cells = [(m, s, student_recipe(recipe, m, s)) for m in methods for s in seeds]
    began = time.perf_counter()
    teacher_stage = run_train(recipe, options)
    _save_recipe(recipe)
    teacher = _record("teacher", recipe.teacher.train.seeds[0], teacher_stage, probe_names, settings,
                      options.device)
    students = []
    for index, (method, seed, cell) in enumerate(cells, start=1):
        console.print(f"[bold cyan]compare[/] [{index}/{len(cells)}] {method} seed {seed}")
        try:
            stage = run_distill(cell, options, teacher_dir=teacher_stage.stage_dir)
        except TrainingDiverged as err:
            # One diverged cell is a result of the comparison (a method unstable at this budget), not a
            # reason to lose the others; a rerun tries it again.
            console.print(f"[red]diverged[/] {method} seed {seed}: {err}")
            students.append(RunRecord(method, seed, cell.run_dir() / "student", "", False, failure=str(err)))
            continue
        _save_recipe(cell)  # so `cidpipe eval runs/<name>/compare/<cell>/student` works like any run
        students.append(_record(method, seed, stage, probe_names, settings, options.device))
    comparison = Comparison(recipe, methods, seeds, probe_names, teacher, students,
                            time.perf_counter() - began, command or _python_command(recipe, methods, seeds,
                                                                                      probe_names))
    atomic_write_text(comparison_dir(recipe) / "results.json",
                      json.dumps(comparison.to_json(), indent=2, default=str))
    if out is not None:
        write_section(Path(out), recipe.name, render_comparison(comparison))
    return comparison


def _save_recipe(recipe: Recipe) -> None:
    from cidpipe.config import dump_recipe_yaml

    recipe.run_dir().mkdir(parents=True, exist_ok=True)
    atomic_write_text(recipe.run_dir() / "recipe.yaml", dump_recipe_yaml(recipe))


def _python_command(recipe: Recipe, methods: list[str], seeds: list[int], probes: list[str]) -> str:
    return (f"cidpipe.study.compare.run_comparison(<recipe {recipe.name}>, methods={methods}, seeds={seeds}, "
            f"probes={probes})")

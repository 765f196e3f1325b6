"""Read a finished run directory (runs/<name>/<stage>/manifest.json) for the gate and the report.

Only reads what the stages wrote; nothing here guesses artifact paths from names. Every manifest goes
through the typed, digest-checked reader and every artifact's sha256 is verified, so a gate never passes a
run whose numbers or files were changed after the stage wrote them (exit 4 naming the file).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cidpipe.errors import ModelError, UsageError
from cidpipe.manifest import read_manifest, verify_artifacts
from cidpipe.untrusted import load_json_file, read_text

GATE_JSON = Path("gate") / "gate.json"


@dataclass
class RunData:
    """Everything the gate and the report need from one run directory."""

    path: Path
    manifests: dict[str, dict[str, Any]]
    recipe_text: str | None = None
    gate: dict[str, Any] | None = None
    results: list[dict[str, Any]] = field(default_factory=list)  # the deployed model's artifacts: gated
    teacher_results: list[dict[str, Any]] = field(default_factory=list)  # the teacher's: for comparison

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def recipe(self) -> str | None:
        return self._latest("recipe")

    @property
    def recipe_id(self) -> str | None:
        return self._latest("recipe_id")

    def _latest(self, key: str) -> str | None:
        # The last stage that ran carries the recipe that produced the artifacts being judged.
        for stage in reversed(list(self.manifests)):
            value = self.manifests.get(stage, {}).get(key)
            if value is not None:
                return str(value)
        return None

    def stages_made_with_another_recipe(self) -> list[str]:
        """Stages whose settings are not what recipe.yaml gives them: a single-stage verb with --set values
        (or an edited recipe) made them, while recipe.yaml, which only `run` and the training verbs write,
        holds the older settings. Empty when recipe.yaml is missing or does not validate."""
        import json

        from cidpipe.config import validate_recipe
        from cidpipe.errors import CidpipeError
        from cidpipe.pipeline import stage_named
        from cidpipe.untrusted import load_yaml_text

        if self.recipe_text is None:
            return []
        try:
            recipe = validate_recipe(load_yaml_text(self.recipe_text, "recipe.yaml"))
        except (CidpipeError, ValueError):
            return []
        different = []
        for name, manifest in self.manifests.items():
            try:
                expected = json.loads(json.dumps(stage_named(name).config(recipe), default=str))
            except (CidpipeError, OSError, KeyError, ValueError):
                continue  # e.g. weights the recipe names are gone: nothing to compare with
            if manifest.get("config") is not None and manifest["config"] != expected:
                different.append(name)
        return different

    def metrics(self, stage: str) -> dict[str, Any]:
        return self.manifests.get(stage, {}).get("metrics") or {}

    @property
    def reference_top1(self) -> float | None:
        """The FP32 PyTorch student's test top-1: the base for "drop vs FP32"."""
        reference = self.metrics("bench").get("reference") or {}
        if reference.get("top1") is not None:
            return float(reference["top1"])
        student_top1 = self.metrics("student").get("test_top1")
        return None if student_top1 is None else float(student_top1)


def artifact_label(result: dict[str, Any]) -> str:
    """The artifact a bench row measured, by name: its format, plus its variant where one format has
    several (``onnx-int8-trt``, the TensorRT graph, next to the CPU ``onnx-int8``): the gate checks each."""
    fmt = str(result.get("format", "?"))
    return f"{fmt}-{result['variant']}" if result.get("variant") else fmt


def result_subject(result: dict[str, Any], with_batch: bool = True) -> str:
    """The name a bench result goes by in checks and tables, e.g. ``onnx-int8@local,bs=1``."""
    subject = f"{artifact_label(result)}@{result.get('device', 'local')}"
    if with_batch:
        subject += f",bs={result.get('batch_size', 1)}"
    return subject


def load_run(run_dir: Path) -> RunData:
    """Load the manifests of ``run_dir``; a directory without any stage manifest is a usage error."""
    from cidpipe.pipeline import addressed_stage_names

    stages = addressed_stage_names()
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UsageError(f"run directory {run_dir} does not exist; pass runs/<name> of a finished run")
    manifests: dict[str, dict[str, Any]] = {}
    for stage in stages:
        stage_dir = run_dir / stage
        if (stage_dir / "manifest.json").is_file():
            manifest = read_manifest(stage_dir, stage)
            problem = verify_artifacts(stage_dir, manifest)
            if problem:
                raise ModelError(f"{problem}; the run was changed after it was written, rerun that stage")
            manifests[stage] = manifest.model_dump(mode="json")
    _refuse_stale_bench(run_dir, manifests)
    if not manifests:
        raise UsageError(
            f"{run_dir} is not a run directory (no <stage>/manifest.json for any of {', '.join(stages)}); "
            "pass runs/<name> after `cidpipe run`"
        )
    recipe_path = run_dir / "recipe.yaml"
    recipe_text = read_text(recipe_path, "run recipe") if recipe_path.is_file() else None
    gate_path = run_dir / GATE_JSON
    gate = _read_json(gate_path) if gate_path.is_file() else None
    rows = list(manifests.get("bench", {}).get("metrics", {}).get("results") or [])
    teacher_rows = [row for row in rows if row.get("role") == "teacher"]
    results = [row for row in rows if row.get("role") != "teacher"]
    return RunData(run_dir, manifests, recipe_text, gate, results, teacher_rows)


def _refuse_stale_bench(run_dir: Path, manifests: dict[str, dict[str, Any]]) -> None:
    """ModelError (4) when a stage the bench measured was rebuilt since (``cidpipe quantize RUN --mode fp16``
    after a bench): the bench rows then describe artifacts that are gone, and a gate must not pass on them."""
    bench = manifests.get("bench")
    if bench is None:
        return
    for parent, measured_id in (bench.get("parents") or {}).items():
        current = manifests.get(parent)
        if current is not None and current.get("id") != measured_id:
            raise ModelError(
                f"{run_dir / 'bench'} measured {parent} {str(measured_id)[:12]}, but {run_dir / parent} is "
                f"now {str(current.get('id'))[:12]} (rebuilt since): its rows describe artifacts that are "
                f"gone; rerun `cidpipe bench {run_dir}` (or `cidpipe run`) before gating or reporting"
            )


def _read_json(path: Path) -> dict[str, Any]:
    data = load_json_file(path, "run file")
    if not isinstance(data, dict):
        raise UsageError(f"{path} does not hold a JSON object; rerun the stage that writes it")
    return data

"""`cidpipe run`: the stages a recipe enables, in order, each skipped when its cached result still holds.

A stage's id is a hash of its config and its parents' ids, so changing a distill hyper-parameter changes the
student's id and with it the ids of everything downstream, while the teacher stays cached. The plan is
computed before anything runs, which is what `--dry-run` prints.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cidpipe.atomic import atomic_write_text
from cidpipe.config import Recipe, dump_recipe_yaml
from cidpipe.errors import UsageError
from cidpipe.manifest import StageWork, cache_status
from cidpipe.stages.common import StageOptions, StageResult


@dataclass
class StageSpec:
    """One pipeline stage: whether the recipe enables it, its planned work (id), and how to run it."""

    name: str
    enabled: Callable[[Recipe], bool]
    plan: Callable[[Recipe, dict[str, str]], StageWork | None]  # None: not content-addressed (always runs)
    run: Callable[[Recipe, StageOptions], object]
    parents: tuple[str, ...] = ()


@dataclass
class PlannedStage:
    name: str
    action: str  # "run", "cached", "skip"
    reason: str
    id: str | None = None


@dataclass
class PipelineResult:
    plan: list[PlannedStage]
    results: dict[str, object] = field(default_factory=dict)


def _stage_specs() -> list[StageSpec]:
    from cidpipe.stages import registry

    return registry.PIPELINE


def stage_names() -> list[str]:
    return [spec.name for spec in _stage_specs()]


def make_plan(
    recipe: Recipe, *, force: bool = False, start: str | None = None, only: str | None = None
) -> list[PlannedStage]:
    from cidpipe.preflight import preflight

    names = stage_names()
    for flag, value in (("--from", start), ("--only", only)):
        if value is not None and value not in names:
            raise UsageError(f"{flag} {value}: unknown stage; stages are {', '.join(names)}")
    preflight(recipe)  # a typo'd path or device fails here, not after the teacher has trained
    ids: dict[str, str] = {}
    plan: list[PlannedStage] = []
    started = start is None and only is None
    for spec in _stage_specs():
        if spec.name in (start, only):
            started = True
        work = spec.plan(recipe, ids) if spec.enabled(recipe) else None
        if work is not None:
            ids[spec.name] = work.id
        if not spec.enabled(recipe):
            plan.append(PlannedStage(spec.name, "skip", "disabled in the recipe"))
            continue
        if not started or (only is not None and spec.name != only):
            why = f"before --from {start}" if start else f"--only {only}"
            plan.append(PlannedStage(spec.name, "skip", why, work.id if work else None))
            continue
        if work is None:
            plan.append(PlannedStage(spec.name, "run", "always runs (cheap, reads the finished stages)"))
            continue
        reusable, reason = cache_status(work.stage_dir, work.id)
        if force:
            plan.append(PlannedStage(spec.name, "run", "--force", work.id))
        else:
            plan.append(PlannedStage(spec.name, "cached" if reusable else "run", reason, work.id))
    return plan


def run_pipeline(
    recipe: Recipe,
    options: StageOptions,
    *,
    start: str | None = None,
    only: str | None = None,
    dry_run: bool = False,
) -> PipelineResult:
    plan = make_plan(recipe, force=options.force, start=start, only=only)
    result = PipelineResult(plan)
    if dry_run:
        return result
    from cidpipe.debris import sweep_run_dir

    sweep_run_dir(recipe.run_dir())
    specs = {spec.name: spec for spec in _stage_specs()}
    for planned in plan:
        if planned.action == "skip":
            continue
        result.results[planned.name] = specs[planned.name].run(recipe, options)
        # Written once a stage has succeeded, so a recipe that fails at once leaves no run directory behind.
        atomic_write_text(recipe.run_dir() / "recipe.yaml", dump_recipe_yaml(recipe))
    return result


def stage_result_dir(result: object) -> Path | None:
    return result.stage_dir if isinstance(result, StageResult) else None

"""The pipeline: the one ordered tuple of stages, and the mechanics every stage runs through.

A stage's id is a hash of its config and its parents' ids, so changing a distill hyper-parameter changes the
student's id and with it the ids of everything downstream, while the teacher stays cached. ``make_plan``
computes every id from the planned parents before anything runs (what ``--dry-run`` prints); ``run_stage``
computes it again from the parents' manifests on disk, which are the planned ones once they have run, so the
planned id is the published id (tests/core/test_stage_contract.py holds both to that).

``run_stage`` is used by ``cidpipe run`` and by every single-stage verb alike: validate, read the parents
(verified), the cache check, open the hidden work directory, build, publish atomically, and on any error
(Ctrl-C included) prune the work directory down to its resume state.
"""

from __future__ import annotations

import os
from pathlib import Path

from cidpipe.atomic import atomic_write_text
from cidpipe.config import Recipe, dump_recipe_yaml
from cidpipe.debris import prune_on_error
from cidpipe.errors import CidpipeError, ModelError, UsageError
from cidpipe.manifest import (
    Manifest,
    StageWork,
    cache_status,
    kept_checkpoints,
    read_manifest,
    stage_id,
    verify_artifacts,
)
from cidpipe.stage_changes import describe_change
from cidpipe.stages.bench import BENCH
from cidpipe.stages.contract import Parent, PipelineResult, Plan, Stage, StageOptions, StageResult
from cidpipe.stages.distill import STUDENT
from cidpipe.stages.export import EXPORT
from cidpipe.stages.gate import GATE
from cidpipe.stages.quantize import QUANTIZE
from cidpipe.stages.report import REPORT
from cidpipe.stages.train import TEACHER
from cidpipe.stages.trt import TRT

# The only list of stages: order is execution order, and every parent comes before its children.
STAGES: tuple[Stage, ...] = (TEACHER, STUDENT, EXPORT, QUANTIZE, TRT, BENCH, GATE, REPORT)


def stage_named(name: str) -> Stage:
    """The stage called ``name`` (its directory name, or the verb that runs it)."""
    for stage in STAGES:
        if name in (stage.name, stage.verb):
            return stage

    def label(stage: Stage) -> str:  # "teacher (train)": the name, and the verb where it is another word
        return (
            stage.name
            if stage.verb in (stage.name, "") or " " in stage.verb
            else f"{stage.name} ({stage.verb})"
        )

    known = ", ".join(label(stage) for stage in STAGES)
    raise UsageError(f"unknown stage {name!r}; stages are {known}")


def addressed_stage_names() -> tuple[str, ...]:
    """Directories that hold a manifest, in pipeline order (what the gate and the report read)."""
    return tuple(stage.name for stage in STAGES if stage.addressed)


def _planned_ids(recipe: Recipe) -> dict[str, str]:
    ids: dict[str, str] = {}
    for stage in STAGES:
        if stage.addressed and stage.enabled(recipe):
            ids[stage.name] = stage_id(stage.name, stage.config(recipe), _parent_ids(stage, recipe, ids))
    return ids


def _parent_ids(stage: Stage, recipe: Recipe, ids: dict[str, str]) -> dict[str, str]:
    missing = [name for name in stage.parents(recipe) if name not in ids]
    if missing:  # a recipe the validators let through but whose stages cannot chain
        raise UsageError(f"stage {stage.name} reads {', '.join(missing)}, which this recipe does not enable")
    return {name: ids[name] for name in stage.parents(recipe)}


def _reusable(
    stage: Stage, recipe: Recipe, directory: Path, expected_id: str, parents: dict[str, str] | None = None
) -> tuple[bool, str]:
    """``parents`` (the plan's): also say what changed when the id differs. A stage about to build skips
    that: its reason is not shown, and the config of a training stage hashes its weights file again."""
    def what_changed(manifest: Manifest) -> str:
        return describe_change(manifest, stage.config(recipe), parents or {}, stage.recipe_view)

    ok, reason = cache_status(directory, expected_id,
                              describe_change=what_changed if parents is not None else None)
    if not ok:
        return ok, reason
    return stage.reusable(recipe, read_manifest(directory, stage.name))


def make_plan(
    recipe: Recipe, *, force: bool = False, start: str | None = None, only: str | None = None
) -> list[Plan]:
    """What ``cidpipe run`` will do, stage by stage, with each stage's id; validates every enabled stage."""
    first = stage_named(start).name if start is not None else None
    single = stage_named(only).name if only is not None else None
    for stage in STAGES:  # a typo'd path or device fails here, not after the teacher has trained
        if stage.enabled(recipe):
            stage.validate(recipe)
    ids = _planned_ids(recipe)
    plan: list[Plan] = []
    started = first is None and single is None
    for stage in STAGES:
        started = started or stage.name in (first, single)
        planned_id = ids.get(stage.name)
        if not stage.enabled(recipe):
            plan.append(Plan(stage.name, "skip", "disabled in the recipe"))
        elif not started or (single is not None and stage.name != single):
            why = f"before --from {start}" if start else f"--only {only}"
            plan.append(Plan(stage.name, "skip", why, planned_id))
        elif not stage.addressed:
            plan.append(Plan(stage.name, "run", "always runs (cheap, reads the finished stages)"))
        elif force:
            plan.append(Plan(stage.name, "run", "--force", planned_id))
        else:
            reusable, reason = _reusable(stage, recipe, stage.dir(recipe), planned_id,
                                         _parent_ids(stage, recipe, ids))
            if not reusable and kept_checkpoints(stage.dir(recipe), planned_id):
                reason += "; resumes from the epoch checkpoint an interrupted run kept"
            note = None if reusable else stage.plan_note(recipe)
            if note:
                reason += f"; {note}"
            plan.append(Plan(stage.name, "cached" if reusable else "run", reason, planned_id))
    return plan


def run_pipeline(
    recipe: Recipe,
    options: StageOptions,
    *,
    start: str | None = None,
    only: str | None = None,
    dry_run: bool = False,
) -> PipelineResult:
    """Run (or, with ``dry_run``, only plan) every stage the recipe enables, in order."""
    try:
        plan = make_plan(recipe, force=options.force, start=start, only=only)
    except CidpipeError as err:  # the pre-flight (an unreachable device, missing data) refused the run
        if not dry_run:
            _record_failure_for_the_gate(recipe, None, "pre-flight", err)
        raise
    result = PipelineResult(plan)
    if dry_run:
        return result
    from cidpipe.debris import sweep_run_dir

    sweep_run_dir(recipe.run_dir())
    for planned in plan:
        if planned.action == "skip":
            continue
        stage = stage_named(planned.name)
        try:
            result.results[stage.name] = run_stage(stage, recipe, options, validated=True)
        except CidpipeError as err:
            _record_failure_for_the_gate(recipe, plan, stage.name, err)
            raise
        # Written once a stage has published work, so a recipe that fails at once leaves no run directory
        # behind, and a changed recipe that fails before publishing anything (its teacher cached, its new
        # student refused) does not replace the recipe the run's stages were made with: verbs pointed at
        # the run directory read it.
        if not _was_cached(result.results[stage.name]):
            write_run_recipe(recipe)
    if all(_was_cached(outcome) for outcome in result.results.values()):
        write_run_recipe(recipe)  # everything reused: the same stages, and the recipe the run is at now
    return result


def _was_cached(outcome) -> bool:
    """A stage result reused from the cache (the readers, gate and report, always run: never cached)."""
    return bool(getattr(outcome, "cached", False))


def _record_failure_for_the_gate(recipe: Recipe, plan, failed: str, err: CidpipeError) -> None:
    """A stage (or the pre-flight, ``plan`` None) before the gate failed: replace the previous run's gate
    verdict with this failure."""
    if plan is None:
        planned_gate = recipe.gate.enabled
    else:
        planned_gate = any(p.name == "gate" and p.action != "skip" for p in plan)
    if failed == "gate" or not planned_gate or not recipe.run_dir().is_dir():
        return  # the gate writes its own verdict; a run that never started leaves no directory
    from cidpipe.gate.outputs import write_run_failure

    try:
        write_run_failure(recipe.run_dir(), failed, " ".join(str(err).split()), err.exit_code)
    except (CidpipeError, OSError):
        pass  # e.g. the disk that failed the stage is full: the stage's own error is the one to report


def write_run_recipe(recipe: Recipe) -> None:
    """runs/<name>/recipe.yaml: the resolved recipe, so later verbs can be pointed at the run directory.

    The gate's baseline and the device inventory are written as absolute paths: a relative one was typed
    relative to the directory the run was started from, and `cidpipe gate RUN` from any other directory
    would look for it there. (Neither is part of a stage id, so this changes no cache key; data and weight
    paths are, and stay as typed.)"""
    gate, bench = recipe.gate, recipe.bench
    updates = {}
    if gate.baseline is not None and not gate.baseline.is_absolute():
        updates["gate"] = gate.model_copy(update={"baseline": gate.baseline.absolute()})
    if bench.inventory is not None and not bench.inventory.is_absolute():
        updates["bench"] = bench.model_copy(update={"inventory": bench.inventory.absolute()})
    atomic_write_text(recipe.run_dir() / "recipe.yaml", dump_recipe_yaml(recipe.model_copy(update=updates)))


def read_parents(stage: Stage, recipe: Recipe, sources: dict[str, Path] | None = None) -> dict[str, Parent]:
    """The verified manifests of ``stage``'s parents: the run's own, or the directories in ``sources``."""
    inputs: dict[str, Parent] = {}
    for name in stage.parents(recipe):
        if sources and name in sources:  # a directory the user named (e.g. distill --teacher DIR)
            directory = Path(sources[name])
            inputs[name] = _verified(directory, read_manifest(directory))
            continue
        directory = recipe.run_dir() / name
        try:
            manifest = read_manifest(directory, name)
        except UsageError:
            raise UsageError(
                f"{stage.name} reads the {name} stage, which has not run in {recipe.run_dir()}; "
                f"run `cidpipe {stage_named(name).verb}` first, or `cidpipe run` for the whole pipeline"
            ) from None
        inputs[name] = _verified(directory, manifest)
    return inputs


def _verified(directory: Path, manifest) -> Parent:
    """The parent, once every artifact it lists has its recorded size and sha256 (else exit 4, and the
    child's work directory is never created)."""
    problem = verify_artifacts(directory, manifest)
    if problem:
        raise ModelError(f"{problem}; rerun the {manifest.stage} stage (cidpipe run ... --force)")
    return Parent(directory, manifest)


def run_stage(
    stage: Stage,
    recipe: Recipe,
    options: StageOptions,
    *,
    sources: dict[str, Path] | None = None,
    validated: bool = False,
):
    """Run one stage: its finished result when cached, else build and publish it (see module doc)."""
    if not validated:
        stage.validate(recipe)
    if not stage.addressed:
        return stage.build(recipe, None, {}, options)
    inputs = read_parents(stage, recipe, sources)
    work = StageWork(
        stage.dir(recipe),
        stage.name,
        stage.config(recipe),
        {name: parent.manifest.id for name, parent in inputs.items()},
        recipe=recipe.name,
        recipe_id=recipe.recipe_id(),
    )
    if not options.force:
        reusable, _reason = _reusable(stage, recipe, work.stage_dir, work.id)
        if reusable:
            options.log.print(
                f"[green]cached[/] {stage.name} ({work.stage_dir}) — same config, parents and artifacts"
            )
            manifest = read_manifest(work.stage_dir, stage.name)
            stage.on_cached(recipe, manifest, options)
            return StageResult(stage.name, work.stage_dir, manifest, cached=True)
    rank = int(os.environ.get("RANK", "0"))  # torchrun sets it; rank 0 alone writes the stage
    work.open()
    # On failure keep the epoch checkpoints (a rerun resumes from them) and drop everything else.
    with prune_on_error(work.work_dir, enabled=rank == 0):
        built = stage.build(recipe, work, inputs, options)
        if built is not None:
            manifest = work.commit(metrics=built.metrics, model=built.model, device=built.device)
    _wait_for_rank_zero()
    if built is None:  # another DDP rank: read what rank 0 published
        return StageResult(
            stage.name, work.stage_dir, read_manifest(work.stage_dir, stage.name), cached=False
        )
    if built.after_publish is not None:
        built.after_publish(manifest)
    return StageResult(stage.name, work.stage_dir, manifest, cached=False)


def _wait_for_rank_zero() -> None:
    if os.environ.get("WORLD_SIZE", "1") != "1":
        from cidpipe.training import distributed

        distributed.barrier()

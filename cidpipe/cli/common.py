"""Options and output helpers shared by every verb."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

import typer

from cidpipe.config import Recipe, load_recipe
from cidpipe.console import make_console
from cidpipe.stages.contract import StageOptions, resolve_device

console = make_console(stderr=True)
stdout = make_console(stderr=False)

RecipeArg = Annotated[
    str, typer.Argument(help="recipe YAML file or bundled recipe name (see `cidpipe recipes list`)")
]
SetOpt = Annotated[
    list[str] | None, typer.Option("--set", help="override a recipe key: --set student.train.epochs=5")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="print machine-readable JSON on stdout")]
OutOpt = Annotated[
    Path | None, typer.Option("--out", help="parent directory of the run (default: recipe out_dir)")
]
DeviceOpt = Annotated[
    str,
    typer.Option("--device", help="cpu | cuda | cuda:N | auto (auto: the recipe's device, else CUDA if any)"),
]
SeedOpt = Annotated[
    int | None, typer.Option("--seed", help="train with this single seed (overrides *.train.seeds)")
]
ForceOpt = Annotated[
    bool, typer.Option("--force", help="rerun even when a finished stage with the same id exists")
]
ResumeOpt = Annotated[
    bool,
    typer.Option("--resume/--fresh", help="continue from the last epoch checkpoint of an interrupted run"),
]


def recipe_from_cli(
    source: str,
    overrides: list[str] | None,
    *,
    out: Path | None = None,
    seed: int | None = None,
    seeds: str | None = None,
) -> Recipe:
    extra = list(overrides or [])
    if out is not None:
        extra.append(f"out_dir={out}")
    chosen = seeds if seeds is not None else (str(seed) if seed is not None else None)
    recipe = load_recipe(source, extra)
    global _last_run_dir
    _last_run_dir = recipe.run_dir()
    if chosen is not None:
        values = parse_seeds(chosen)
        recipe.teacher.train.seeds = values
        if recipe.student is not None:
            recipe.student.train.seeds = values
    return recipe


def parse_seeds(text: str) -> list[int]:
    from cidpipe.errors import UsageError

    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UsageError(f"--seeds expects comma-separated integers like 1,2,3, got '{text}'") from None
    if not values:
        raise UsageError("--seeds needs at least one seed")
    return values


# The run directory of the recipe this command loaded last: an OSError without a file name (a failed write on
# an open file, e.g. a full disk) is reported as happening under it (cidpipe.cli.main).
_last_run_dir: Path | None = None
_DEVICE_PATTERN = re.compile(r"^(cpu|auto|cuda(:\d+)?)$")


def last_run_dir() -> Path | None:
    return _last_run_dir


def check_device_option(device: str, option: str = "--device") -> str:
    """``cpu``, ``cuda``, ``cuda:N`` or ``auto``; anything else is a usage error before any work starts."""
    from cidpipe.errors import UsageError

    if not _DEVICE_PATTERN.match(device.strip()):
        raise UsageError(f"{option} {device!r} is not a training device; use cpu, cuda, cuda:N or auto")
    return device.strip()


def recipe_device(option: str, recipe: Recipe) -> str:
    """``--device`` when given, else the recipe's ``device`` (both default to auto: CUDA when present)."""
    return option if option != "auto" else recipe.device


def stage_options(
    device: str, force: bool = False, resume: bool = True, *, option: str = "--device"
) -> StageOptions:
    device = check_device_option(device, option)
    return StageOptions(device=resolve_device(device), force=force, resume=resume, console=console)


def emit_json(data: Any) -> None:
    """Print the verb's ``--json`` reply: ``data`` as the ``result`` of the one JSON contract."""
    from cidpipe.cli.json_contract import current_verb, dumps, envelope

    stdout.out(dumps(envelope(current_verb(), data)), highlight=False)


def resolve_target(
    target: str, overrides: list[str] | None, *, out: Path | None = None
) -> tuple[Recipe, Path | None]:
    """A verb's target: a recipe (file or bundled name), a run directory, or one stage directory of a run.

    Run directories carry the resolved recipe (runs/<name>/recipe.yaml), so `cidpipe export runs/q/student`
    needs no recipe argument. Returns the recipe and the stage directory when one was named.
    """
    from cidpipe.errors import UsageError
    from cidpipe.manifest import MANIFEST_NAME

    path = Path(target)
    _refuse_unfinished_stage(path, target)
    if path.is_dir():
        path = path.resolve()  # "runs/q/.." must not become a run named ".."
        stage = path if (path / MANIFEST_NAME).is_file() else None
        run_dir = path.parent if stage else path
        recipe_file = run_dir / "recipe.yaml"
        if not recipe_file.is_file():
            raise UsageError(f"{target} is neither a recipe nor a cidpipe run directory (no {recipe_file})")
        extra = list(overrides or []) + [f"out_dir={run_dir.parent}"]
        recipe = recipe_from_cli(str(recipe_file), extra)
        if recipe.name != run_dir.name:
            _refuse_recipe_folder(run_dir, recipe_file, recipe.name, target)
            import re

            from cidpipe.config import RUN_NAME_PATTERN

            if not re.match(RUN_NAME_PATTERN, run_dir.name):
                raise UsageError(
                    f"{run_dir} is not a usable run directory name; rename it (letters, digits, _ . -)"
                )
            # A copied or renamed run (CI downloads runs/quickstart into runs/quickstart-pr123) is still
            # the recipe's run: manifests and the gate's baseline check keep the recipe's name.
            recipe = recipe.at_run_directory(run_dir)
            global _last_run_dir
            _last_run_dir = recipe.run_dir()
        return recipe, stage
    return recipe_from_cli(target, overrides, out=out), None


def resolve_target_with_flags(
    target: str, overrides: list[str] | None, flags: dict[str, str]
) -> tuple[Recipe, Path | None]:
    """:func:`resolve_target` with a verb's own options given as ``{override: flag}``
    (``{"quantize.mode=int4": "--mode int4"}``): a bad value is blamed on the flag the user typed, not on a
    ``--set`` they never wrote."""
    from cidpipe.errors import ConfigError

    try:
        return resolve_target(target, [*(overrides or []), *flags])
    except ConfigError as err:
        text = str(err)
        for override, flag in flags.items():
            if text.startswith(f"--set {override} ("):
                raise ConfigError(flag + text[len(f"--set {override}"):]) from None
        raise


def _refuse_recipe_folder(folder: Path, recipe_file: Path, name: str, target: str) -> None:
    """A folder holding the user's own recipe.yaml, no stage in it and another name than the recipe's, is
    where a recipe was kept, not a run: say so, instead of "the export stage has not run in <folder>"."""
    from cidpipe.errors import UsageError
    from cidpipe.pipeline import addressed_stage_names

    if any((folder / stage).is_dir() for stage in addressed_stage_names()):
        return  # a run copied or renamed (CI downloads runs/quickstart into runs/quickstart-pr123)
    raise UsageError(
        f"{target} is not a cidpipe run directory: it holds a recipe ({recipe_file.name}, run {name!r}) but "
        f"no stage; pass the recipe file ({recipe_file}) or the run directory its stages write "
        f"(<out_dir>/{name})"
    )


def _refuse_unfinished_stage(path: Path, target: str) -> None:
    """``runs/q/student`` where the run has no finished student: say which verb makes it, not "no recipe
    named runs/q/student" (the path is read as a recipe name once it is not a directory)."""
    from cidpipe.errors import UsageError
    from cidpipe.manifest import MANIFEST_NAME

    run_dir = path.parent
    if (path / MANIFEST_NAME).is_file() or not (run_dir / "recipe.yaml").is_file():
        return
    from cidpipe.pipeline import STAGES

    for stage in STAGES:
        if path.name == stage.name and stage.addressed:
            verb, _, options = stage.verb.partition(" ")  # "export --target trt"
            command = " ".join(part for part in ("cidpipe", verb, str(run_dir), options) if part)
            raise UsageError(
                f"{target}: the run {run_dir} has no finished {stage.name} stage; make it with "
                f"`{command}` (or `cidpipe run`)"
            )


def note_overrides_stay_here(target: str, overrides: list[str] | None, flags: dict[str, str], stage,
                             recipe: Recipe, log) -> None:
    """After a verb ran a stage of a run directory with options that changed it: those options are not kept
    (the run's recipe.yaml and the user's recipe file keep their values), so the next `cidpipe run` redoes
    the stage without them. Said once, with the recipe keys that would keep them."""
    from rich.markup import escape

    typed = [*(overrides or []), *flags]
    if not typed or not Path(target).is_dir():
        return
    plain, _ = resolve_target(target, None)
    if stage.config(plain) == stage.config(recipe):
        return  # the options repeated what the recipe says
    shown = [flags.get(item, f"--set {item}") for item in typed]
    keys = ", ".join(item.replace("=", ": ", 1) for item in typed)
    log.print(f"note: {escape(' '.join(shown))} applied to this command only; the next `cidpipe run` redoes "
              f"the {stage.name} stage from the recipe without them; to keep them, put them in the recipe "
              f"({escape(keys)})", highlight=False, soft_wrap=True)


def save_run_recipe(recipe: Recipe) -> None:
    """Keep the resolved recipe next to the stages so later verbs can be pointed at the run directory."""
    from cidpipe.pipeline import write_run_recipe

    write_run_recipe(recipe)

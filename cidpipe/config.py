"""The recipe: one typed schema, loaded from YAML with ``yaml.safe_load``.

Unknown keys are rejected with their dotted path and a near-miss suggestion; ``--set a.b=c`` overrides are
applied to the raw mapping before validation, so they get exactly the same checks as the file.
"""

from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, PrivateAttr, ValidationError, model_validator

from cidpipe.bench.config import BenchConfig
from cidpipe.data.config import DataConfig
from cidpipe.distill.config import DistillConfig
from cidpipe.errors import ConfigError, UsageError
from cidpipe.export.config import ExportConfig
from cidpipe.gate.config import GateConfig
from cidpipe.hashing import hash_config
from cidpipe.quantize.config import QuantizeConfig
from cidpipe.report.config import ReportConfig
from cidpipe.sections import DISPLAY, Section
from cidpipe.train_config import StudentConfig, TeacherConfig, check_model_selection
from cidpipe.untrusted import load_yaml_file, load_yaml_text

# The run directory is <out_dir>/<name>, so the name must be one ordinary path component: no separator,
# and no leading dot (which rules out "." and "..", and hidden names that would collide with the
# .<stage>.partial-* work directories).
RUN_NAME_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}$"


_NOT_IN_RECIPE_ID = ("out_dir", "description", "gate", "report")


class Recipe(Section):
    name: str = Field(
        ...,
        pattern=RUN_NAME_PATTERN,
        description="run name: runs/<name>/ (letters, digits, _ . -; not starting with a dot)",
    )
    description: str = ""
    device: str = Field(
        "auto",
        pattern=r"^(auto|cpu|cuda(:\d+)?)$",
        description="where train/distill run unless --device says otherwise; auto = CUDA when torch sees one",
    )
    out_dir: Path = Field(Path("runs"), description="parent of the run directory")
    data: DataConfig = DataConfig()
    teacher: TeacherConfig
    student: StudentConfig | None = None
    distill: DistillConfig = DistillConfig()
    quantize: QuantizeConfig = QuantizeConfig()
    export: ExportConfig = ExportConfig()
    bench: BenchConfig = BenchConfig()
    gate: GateConfig = GateConfig()
    report: ReportConfig = ReportConfig()

    @model_validator(mode="after")
    def _check_cross_section(self) -> Recipe:
        from cidpipe.recipe_names import check_names

        check_names(self)
        for role in ("teacher", "student"):
            section = getattr(self, role)
            if section is not None:
                check_model_selection(section.train, self.data.val_fraction, role)
        if self.quantize.enabled and self.quantize.max_drop is not None and self.data.val_fraction == 0:
            raise ConfigError(
                "quantize.max_drop is measured on the validation split but data.val_fraction is 0; "
                "drop max_drop or hold out a validation split (the test split is never used for it)"
            )
        cid = self.distill.cid
        if (
            self.student is not None
            and self.distill.enabled
            and self.distill.method == "cid"
            and cid.warmup_epochs >= self.student.train.epochs
        ):
            raise ConfigError(
                f"distill.cid.warmup_epochs ({cid.warmup_epochs}) must be below student.train.epochs "
                f"({self.student.train.epochs}): CID builds its dictionary in the last warm-up epoch and "
                "needs epochs after it; lower the warm-up or train longer"
            )
        return self

    # The directory this recipe's run lives in when it is not <out_dir>/<name>: a run copied or renamed
    # (runs/quickstart-pr123) keeps its recipe's name, which is what baselines and manifests identify it by.
    _run_dir_name: str | None = PrivateAttr(None)

    def run_dir(self) -> Path:
        return self.out_dir / (self._run_dir_name or self.name)

    def at_run_directory(self, run_dir: Path) -> Recipe:
        """This recipe, placed at an existing run directory (which may carry another name than the recipe)."""
        placed = self.model_copy(update={"out_dir": run_dir.parent})
        placed._run_dir_name = run_dir.name if run_dir.name != self.name else None
        return placed

    def canonical(self) -> dict[str, Any]:
        """The resolved recipe as plain JSON types (paths as strings), defaults filled in."""
        return json.loads(self.model_dump_json())

    def display(self) -> dict[str, Any]:
        """``canonical`` with every key shown, also those the ids leave out at their defaults."""
        return json.loads(self.model_dump_json(context=DISPLAY))

    def recipe_id(self) -> str:
        """A hash of what produces the run's numbers. Where the run lives (out_dir, a renamed run
        directory), how it is judged and reported (gate, report) and its description are left out: a
        baseline's "the recipe changed since" note must mean the models could differ, not that CI ran
        the same recipe from another directory or with another gate tolerance."""
        content = {k: v for k, v in self.canonical().items() if k not in _NOT_IN_RECIPE_ID}
        return hash_config(content)


def _fields_at(path: tuple, model: type[Section] = Recipe) -> list[str]:
    """Field names of the section a dotted path points into (for near-miss suggestions)."""
    current: Any = model
    for part in path:
        fields = getattr(current, "model_fields", None)
        if not fields or part not in fields:
            return []
        annotation = fields[part].annotation
        args = [a for a in getattr(annotation, "__args__", ()) if hasattr(a, "model_fields")]
        current = args[0] if args else annotation
    return list(getattr(current, "model_fields", {}))


def _user_path(loc: tuple, raw: Any) -> str:
    """The error location as the user wrote it: 'data.input_size[0]', without the tags pydantic adds for
    a union's members ('data.input_size.hw.0'), found as the parts that do not index into the input."""
    text, node = "", raw
    for part in loc:
        if isinstance(node, dict) and part in node:
            text, node = (f"{text}.{part}" if text else str(part)), node[part]
        elif isinstance(node, list | tuple) and isinstance(part, int) and 0 <= part < len(node):
            text, node = f"{text}[{part}]", node[part]
        elif isinstance(node, dict) or isinstance(part, int):  # a key that is not there (missing, unknown)
            text, node = (f"{text}.{part}" if text else str(part)), None
    return text


def _explain(err: ValidationError, source: str, raw: Any = None) -> ConfigError:
    first = err.errors()[0]
    loc = tuple(str(p) for p in first["loc"])
    dotted = (_user_path(tuple(first["loc"]), raw) if raw is not None else ".".join(loc)) or "<top>"
    if first["type"] == "extra_forbidden":
        known = _fields_at(loc[:-1])
        close = difflib.get_close_matches(loc[-1], known, n=1)
        hint = (
            f" (did you mean '{'.'.join(loc[:-1] + (close[0],))}'?)"
            if close
            else (f" (allowed here: {', '.join(known)})" if known else "")
        )
        return ConfigError(f"{source}: unknown key '{dotted}'{hint}")
    if first["type"] == "missing":
        return ConfigError(f"{source}: missing required key '{dotted}'")
    value = first.get("input")
    shown = f" (got {value!r})" if not isinstance(value, dict) else ""
    message = first["msg"].removeprefix("Value error, ")  # pydantic's wrapping of a validator's ValueError
    if raw is not None:
        message = _with_union_alternatives(message, err.errors(), dotted, raw)
    return ConfigError(f"{source}: '{dotted}': {message}{shown}")


def _with_union_alternatives(message: str, errors: list, dotted: str, raw: Any) -> str:
    """A union (``bool | 'auto'``) fails once per member at the same key: say every accepted form, not only
    the first member's ("should be a valid boolean" for a key that also takes 'auto')."""
    wanted = [e["msg"] for e in errors[1:] if _user_path(tuple(e["loc"]), raw) == dotted]
    if not wanted or not all(m.startswith("Input should be ") for m in [message, *wanted]):
        return message
    forms = [m.removeprefix("Input should be ").split(", ")[0] for m in [message, *wanted]]
    return "Input should be " + " or ".join(dict.fromkeys(forms))


def parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise UsageError(f"--set expects key.sub=value, got '{text}'")
    key, raw = text.split("=", 1)
    if not key or any(not part for part in key.split(".")):
        raise UsageError(f"--set expects key.sub=value, got '{text}'")
    value = load_yaml_text(raw, f"--set {text}", ConfigError) if raw != "" else ""
    return key.split("."), value


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """Apply ``a.b=c`` overrides (values parsed as YAML scalars/lists) to the raw recipe mapping.

    A key that does not exist in the schema is an error here, not silently created.
    """
    for text in overrides:
        path, value = parse_override(text)
        node = raw
        for depth, part in enumerate(path[:-1]):
            known = _fields_at(tuple(path[:depth]))
            if part not in known:
                close = difflib.get_close_matches(part, known, n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                raise ConfigError(f"--set {text}: no key '{'.'.join(path[: depth + 1])}' in the recipe{hint}")
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"--set {text}: '{'.'.join(path[: depth + 1])}' is not a section")
            node = child
        known = _fields_at(tuple(path[:-1]))
        if path[-1] not in known:
            close = difflib.get_close_matches(path[-1], known, n=1)
            hint = f" (did you mean '{'.'.join(path[:-1] + [close[0]])}'?)" if close else ""
            raise ConfigError(f"--set {text}: no key '{'.'.join(path)}' in the recipe{hint}")
        node[path[-1]] = value
    return raw


def read_recipe_mapping(path: Path) -> dict:
    if not path.is_file():
        raise UsageError(f"recipe file not found: {path} (see `cidpipe recipes list`)")
    raw = load_yaml_file(path, "recipe", ConfigError)
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a recipe must be a YAML mapping, got {type(raw).__name__}")
    return raw


def load_recipe(source: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Load a recipe file (or a bundled recipe by name) and apply ``--set`` overrides."""
    path = resolve_recipe_path(source)
    raw = apply_overrides(read_recipe_mapping(path), overrides or [])
    try:
        return validate_recipe(raw, str(path))
    except ConfigError as err:
        # A value the user typed on the command line is theirs to fix there, not in the recipe file.
        overridden = [text for text in overrides or []
                      if any(f"'{text.split('=', 1)[0]}{end}" in str(err) for end in ("'", "[", "."))]
        if not overridden:
            raise
        raise ConfigError(str(err).replace(f"{path}: ", f"--set {overridden[0]} (on {path}): ", 1)) from None


def validate_recipe(raw: dict, source: str = "recipe") -> Recipe:
    try:
        return Recipe.model_validate(raw)
    except ValidationError as err:
        raise _explain(err, source, raw) from None


def bundled_recipes_dir() -> Path:
    return Path(__file__).resolve().parent.parent / "recipes"


def resolve_recipe_path(source: str | Path) -> Path:
    path = Path(source)
    if path.is_file() or path.suffix in (".yaml", ".yml"):
        return path
    bundled = bundled_recipes_dir() / f"{source}.yaml"
    if bundled.is_file():
        return bundled
    names = [p.stem for p in sorted(bundled_recipes_dir().glob("*.yaml"))]
    close = difflib.get_close_matches(str(source), names, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    if len(path.parts) > 1:  # a path, not a bundled name: the user meant a run directory or a recipe file
        raise UsageError(f"{source} does not exist (looked for {path.absolute()}); pass a recipe file, a "
                         "bundled recipe name or a run directory (runs/<name>)")
    raise UsageError(f"no recipe file or bundled recipe named '{source}'{hint}; see `cidpipe recipes list`")


def recipe_json_schema() -> dict:
    from cidpipe.recipe_names import add_enums_to_schema

    return add_enums_to_schema(Recipe.model_json_schema())


def dump_recipe_yaml(recipe: Recipe) -> str:
    """The recipe as a user reads it: every key (sections.DISPLAY); it validates back to the same ids."""
    return yaml.safe_dump(recipe.display(), sort_keys=False)

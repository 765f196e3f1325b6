"""Registry names in a recipe, checked when the recipe is read (before any compute is spent).

A typo in ``distill.method`` used to surface only after the teacher had trained. Each name a recipe can
hold is checked here against the registry that will later resolve it, and the published JSON schema
carries the same allowed values (``schema_enums``). The registries are imported lazily: they pull in torch,
and ``cidpipe --help`` should not pay for that.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable
from typing import Any

from cidpipe.errors import ConfigError, ModelError


def model_names() -> list[str]:
    from cidpipe.models import list_models

    return list_models()


def method_names() -> list[str]:
    from cidpipe.distill.registry import list_methods

    return list_methods()


def dataset_names() -> list[str]:
    from cidpipe.data.registry import list_datasets

    return list_datasets()


def export_target_names() -> list[str]:
    from cidpipe.export.formats import export_targets

    return export_targets()


def bench_backend_names() -> list[str]:
    from cidpipe.export.formats import FORMATS

    return sorted({backend for fmt in FORMATS for backend in fmt.backends})


def _unknown(kind: str, key: str, value: Any, known: Iterable[str]) -> str:
    known = list(known)
    close = difflib.get_close_matches(str(value), known, n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    return f"{key}: unknown {kind} {value!r}; {hint}choose one of: {', '.join(known)}"


def check_names(recipe: Any) -> None:
    """Raise ModelError (unknown architecture, exit 4) or ConfigError (any other unknown name, exit 2)."""
    for role in ("teacher", "student"):
        section = getattr(recipe, role)
        if section is not None:
            check_arch(section.model.arch, f"{role}.model.arch")
    checks: list[tuple[str, str, list[Any], Callable[[], list[str]]]] = [
        ("dataset", "data.name", [recipe.data.name], dataset_names),
        ("distillation method", "distill.method", [recipe.distill.method], method_names),
        ("export target", "export.targets", list(recipe.export.targets), export_target_names),
        ("bench backend", "bench.backends", list(recipe.bench.backends), bench_backend_names),
    ]
    for kind, key, values, known_names in checks:
        known = known_names()
        for value in values:
            if value not in known:
                raise ConfigError(_unknown(kind, key, value, known))


def check_arch(arch: str, key: str) -> None:
    """A registry name, or ``timm:``/``torchvision:`` (checked against the library, imported only for such a
    name) or ``python:<module>:<function>`` (syntax only: its module is imported when the model is built)."""
    if ":" in arch:
        from cidpipe.models.sources import check_arch_name

        try:
            check_arch_name(arch)
        except ModelError as err:
            raise ModelError(f"{key}: {err}") from None
        return
    archs = model_names()
    if arch not in archs:
        from cidpipe.models.sources import library_hint

        hint = library_hint(arch)
        if hint:
            raise ModelError(f"{key}: unknown model {arch!r}; {hint}")
        raise ModelError(_unknown("model", key, arch, archs) + " (`cidpipe models` lists them)")


# The published schema accepts the prefixed forms as patterns; their names live in the libraries.
ARCH_PATTERNS = (r"^(timm|torchvision):[A-Za-z0-9_.\-]+$", r"^python:[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


def schema_enums() -> dict[tuple[str, ...], list[str]]:
    """JSON-schema locations (definition name, property[, 'items']) and their allowed values."""
    return {
        ("ModelConfig", "arch"): model_names(),
        ("DataConfig", "name"): dataset_names(),
        ("DistillConfig", "method"): method_names(),
        ("ExportConfig", "targets", "items"): export_target_names(),
        ("BenchConfig", "backends", "items"): bench_backend_names(),
    }


def add_enums_to_schema(schema: dict[str, Any]) -> dict[str, Any]:
    defs = schema.get("$defs", {})
    for (definition, prop, *rest), values in schema_enums().items():
        node = defs.get(definition, {}).get("properties", {}).get(prop)
        if node is None:
            continue
        if rest:
            node = node.setdefault("items", {})
        if (definition, prop) == ("ModelConfig", "arch"):
            node["anyOf"] = [{"enum": list(values)}, *({"pattern": p} for p in ARCH_PATTERNS)]
            continue
        node["enum"] = list(values)
    return schema

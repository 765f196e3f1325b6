"""Why a finished stage will rerun: the recipe keys whose values differ from the ones it was made with.

The plan (``cidpipe run --dry-run``, and the table every run prints) used to say only "config or a parent
changed"; a user who edited one key, or whose ``--set`` did more than intended, could not tell which. The
manifest keeps the config a stage was made with, so the difference is exact, not a guess.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from cidpipe.manifest import Manifest

# Beyond this many keys the line names the first ones and counts the rest: the plan is a table row.
_KEYS_SHOWN = 3
_VALUE_WIDTH = 24


def _as_stored(value: Any) -> Any:
    """``value`` as the manifest stores it (JSON: tuples become lists, paths strings)."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def config_changes(old: Any, new: Any, path: str = "") -> list[tuple[str, Any, Any]]:
    """(dotted key, old value, new value) for every leaf that differs; a key only one side has counts too
    (its missing side is None)."""
    if isinstance(old, dict) and isinstance(new, dict):
        changes: list[tuple[str, Any, Any]] = []
        for key in sorted(set(old) | set(new), key=str):
            changes += config_changes(old.get(key), new.get(key), f"{path}.{key}" if path else str(key))
        return changes
    return [] if old == new else [(path, old, new)]


def _short(value: Any) -> str:
    if isinstance(value, dict):  # a whole section one side lacks (another distill method's): its size
        return f"{{{len(value)} key{'s' * (len(value) != 1)}}}"
    text = "unset" if value is None else json.dumps(value) if not isinstance(value, str) else value
    return text if len(text) <= _VALUE_WIDTH else text[: _VALUE_WIDTH - 1] + "…"


def describe_change(
    manifest: Manifest, config: Any, parents: dict[str, str],
    recipe_view: Callable[[dict[str, Any]], dict[str, Any]] = lambda config: config,
) -> str:
    """The plan's reason for rerunning a stage whose id changed: the recipe keys that differ (``recipe_view``
    nests a stage config under the recipe's names), else the parent stages that changed."""
    changes = config_changes(recipe_view(manifest.config), recipe_view(_as_stored(config)))
    # Single keys first: "distill.method kd → cid" says more than the two sections it swaps.
    changes.sort(key=lambda change: isinstance(change[1], dict) or isinstance(change[2], dict))
    if changes:
        named = [f"{key} {_short(old)} → {_short(new)}"
                 for key, old, new in changes[:_KEYS_SHOWN]]
        more = len(changes) - _KEYS_SHOWN
        rest = f" and {more} more key{'s' * (more > 1)}" if more > 0 else ""
        return "changed: " + "; ".join(named) + rest
    moved = sorted(name for name in set(parents) | set(manifest.parents)
                   if parents.get(name) != manifest.parents.get(name))
    if moved:
        if len(moved) == 1:
            return f"the {moved[0]} it was made from changed"
        return f"the stages it was made from changed: {', '.join(moved)}"
    return "config or a parent changed"  # the same config and parents: made by another cidpipe version

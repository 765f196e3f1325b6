"""`cidpipe devices check` as rows a person reads: one fact per row, no Python reprs.

The JSON form (--json) stays the probe's own dict; this is only how the table writes it.
"""

from __future__ import annotations

from typing import Any


def plain(value: Any) -> str:
    """A probe value in words: yes/no, "-" for nothing, lists and mappings as comma-separated text."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if value is None or value == "" or value == [] or value == {}:
        return "-"
    if isinstance(value, dict):
        return ", ".join(f"{key} {plain(item)}" for key, item in value.items())
    if isinstance(value, list | tuple):
        return ", ".join(plain(item) for item in value)
    return str(value)


def _module(info: dict[str, Any]) -> str:
    """{'available': True, 'version': '1.32.0', 'providers': [...]} -> '1.32.0 (providers ...)'."""
    if not info.get("available"):
        return f"not importable ({info['error']})" if info.get("error") else "not importable"
    text = str(info.get("version") or "importable")
    rest = {key: item for key, item in info.items() if key not in ("available", "version")}
    return f"{text} ({plain(rest)})" if rest else text


def report_rows(report: dict[str, Any]) -> list[tuple[str, str]]:
    """(what, value) rows of a check_device report, in its order."""
    rows: list[tuple[str, str]] = []
    for key, value in report.items():
        if key == "python" and isinstance(value, dict):
            detail = ", ".join(str(value[k]) for k in ("version", "machine") if value.get(k))
            path = str(value.get("path", "-"))
            rows.append(("python", f"{path} ({detail})" if detail else path))
        elif key == "numpy" and isinstance(value, dict):
            rows.append(("numpy", _module(value)))
        elif key == "backends" and isinstance(value, dict):
            rows += [(f"backend {name}", _module(info)) for name, info in value.items()]
        elif key == "jetson" and isinstance(value, dict):
            rows += [(f"jetson {name}", plain(item)) for name, item in value.items()]
        elif key == "problems":
            rows.append(("problems", "; ".join(value) if value else "none"))
        elif key.endswith("_s") and isinstance(value, int | float):
            rows.append((key.removesuffix("_s").replace("_", " ") + " time", f"{value:g} s"))
        else:
            rows.append((key, plain(value)))
    return rows

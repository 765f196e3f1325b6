"""Reading files a user hands us (recipes, gate files, inventories, baselines, manifests) as hostile input.

Every such file is read through here so that each failure mode is one line naming the file, never a
traceback or an out-of-memory abort:

- size: at most ``MAX_FILE_BYTES`` on disk, so a multi-gigabyte "recipe" is refused before it is read;
- encoding: UTF-8 only, a decode error names the byte offset;
- YAML alias bombs ("billion laughs"): the composed node graph is walked with aliases expanded, and the
  walk stops once it has seen ``MAX_NODES`` nodes, so a small file that would expand to 9^9 nodes is
  refused in milliseconds instead of being materialised by the constructor (or later by model_dump_json);
- nesting: at most ``MAX_DEPTH`` levels, and a RecursionError from a parser is caught, for YAML and JSON.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from cidpipe.errors import UsageError

# A real recipe is a few kilobytes and a few hundred nodes; a manifest with a long training history a few
# hundred kilobytes. The bounds are far above both and far below what hurts a 2-core CI runner.
MAX_FILE_BYTES = 16 * 1024 * 1024
MAX_NODES = 200_000
MAX_DEPTH = 64


def read_text(path: Path, what: str, error: type[Exception] = UsageError) -> str:
    """The UTF-8 text of ``path``; ``error`` (one line, naming ``what`` and the file) when it cannot be."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise error(f"{what} {path} is {size} bytes (limit {MAX_FILE_BYTES}); is this the right file?")
        raw = path.read_bytes()
    except OSError as err:
        raise error(f"cannot read {what} {path}: {err.strerror or err}; check the path") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise error(
            f"{what} {path} is not UTF-8 text (bad byte at offset {err.start}); save it as UTF-8"
        ) from None


def load_yaml_text(text: str, source: str, error: type[Exception] = UsageError) -> Any:
    """``yaml.safe_load`` of ``text`` after checking that it expands to a bounded, shallow document."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise error(f"{source}:{where} is not valid YAML: {problem}") from None
    except RecursionError:
        raise error(f"{source} is nested too deeply (limit {MAX_DEPTH} levels)") from None
    if node is None:
        return None
    _check_yaml_graph(node, source, error)
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:  # constructor errors (e.g. an unhashable key) after a good compose
        raise error(f"{source} is not valid YAML: {str(exc).splitlines()[0]}") from None


def _check_yaml_graph(root: yaml.Node, source: str, error: type[Exception]) -> None:
    # Aliases share node objects, so counting visits (not distinct nodes) measures the expanded size.
    seen = 0
    stack: list[tuple[yaml.Node, int]] = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        seen += 1
        if seen > MAX_NODES:
            raise error(
                f"{source} expands to more than {MAX_NODES} values (YAML aliases?); write the values out"
            )
        if depth > MAX_DEPTH:
            raise error(f"{source} is nested too deeply (limit {MAX_DEPTH} levels)")
        if isinstance(node, yaml.SequenceNode):
            stack.extend((child, depth + 1) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                stack.append((key, depth + 1))
                stack.append((value, depth + 1))


def load_yaml_file(path: Path, what: str, error: type[Exception] = UsageError) -> Any:
    return load_yaml_text(read_text(path, what, error), str(path), error)


def load_json_text(text: str, source: str, error: type[Exception] = UsageError) -> Any:
    """``json.loads`` with one-line errors; JSON has no aliases, so only nesting needs a bound."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise error(f"{source} is not valid JSON ({exc.msg} at line {exc.lineno})") from None
    except RecursionError:
        raise error(f"{source} is nested too deeply (limit {MAX_DEPTH} levels)") from None
    if _depth(data) > MAX_DEPTH:
        raise error(f"{source} is nested too deeply (limit {MAX_DEPTH} levels)")
    return data


def load_json_file(path: Path, what: str, error: type[Exception] = UsageError) -> Any:
    return load_json_text(read_text(path, what, error), str(path), error)


def _depth(value: Any) -> int:
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if deepest > MAX_DEPTH:
            return deepest
        if isinstance(item, dict):
            stack.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)
    return deepest

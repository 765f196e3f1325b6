"""The Markdown a comparison writes: a mean ± std table, paired differences, per-seed details, provenance.

Several comparisons can share one file (docs/results.md): each owns a section between HTML-comment markers
named after its recipe, which a rerun replaces in place; text outside the markers is left alone.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

from cidpipe.atomic import atomic_write_text
from cidpipe.machine import machine_line
from cidpipe.study.compare import Comparison
from cidpipe.study.stats import exceeds_noise, format_mean_std, mean_std, paired_differences

COLUMN_TITLES = {
    "test_top1": "test top-1 %",
    "aligned": "aligned %",
    "unbiased": "unbiased (test) %",
    "conflicting": "conflicting %",
    "gap": "bias gap (pp)",
}


def column_title(column: str) -> str:
    if column.startswith("probe:"):
        return f"linear probe {column.removeprefix('probe:')} %"
    return COLUMN_TITLES.get(column, column)


def _table(comparison: Comparison) -> list[str]:
    columns = comparison.metric_columns()
    lines = ["| model | seeds | " + " | ".join(column_title(c) for c in columns) + " |",
             "|---|---:|" + "---:|" * len(columns)]
    teacher = comparison.teacher
    lines.append(f"| teacher ({comparison.recipe.teacher.model.arch}) | 1 | "
                 + " | ".join(format_mean_std([teacher.metrics[c]]) for c in columns) + " |")
    student_arch = comparison.recipe.student.model.arch if comparison.recipe.student else "?"
    for method in comparison.methods:
        records, failed = comparison.records(method), comparison.failures(method)
        cells = [format_mean_std([r.metrics[c] for r in records]) if records else "diverged" for c in columns]
        count = f"{len(records)}" + (f" ({len(failed)} diverged)" if failed else "")
        lines.append(f"| {method} ({student_arch}) | {count} | " + " | ".join(cells) + " |")
    return lines


def _differences(comparison: Comparison, baseline: str) -> list[str]:
    if baseline not in comparison.methods or len(comparison.seeds) < 2:
        return []
    columns = comparison.metric_columns()
    base = {c: {r.seed: r.metrics[c] for r in comparison.records(baseline)} for c in columns}
    lines = [f"Paired differences to **{baseline}** (same seed = same student initialisation and data order; "
             "mean ± sample std over seeds; * = paired two-sided t-test over seeds at 5 %, i.e. the "
             "difference is larger than the seed noise):",
             "",
             "| method | " + " | ".join(column_title(c) for c in columns) + " |",
             "|---|" + "---:|" * len(columns)]
    for method in comparison.methods:
        if method == baseline:
            continue
        cells = []
        for c in columns:
            diffs = paired_differences({r.seed: r.metrics[c] for r in comparison.records(method)}, base[c])
            mean, std = mean_std(diffs)
            cells.append(f"{mean:+.2f} ± {std:.2f}{' *' if exceeds_noise(diffs) else ''}")
        lines.append(f"| {method} − {baseline} | " + " | ".join(cells) + " |")
    return lines


def _details(comparison: Comparison) -> list[str]:
    columns = comparison.metric_columns()
    lines = ["<details><summary>per-seed values</summary>", "",
             "| model | seed | " + " | ".join(column_title(c) for c in columns) + " | train s | stage |",
             "|---|---:|" + "---:|" * len(columns) + "---:|---|"]
    for r in [comparison.teacher, *comparison.students]:
        seconds = f"{r.train_seconds:.1f}" if r.train_seconds is not None else "—"
        values = ["diverged"] * len(columns) if r.failure else [f"{r.metrics[c]:.2f}" for c in columns]
        lines.append(f"| {r.method} | {r.seed} | " + " | ".join(values) + f" | {seconds} | `{r.stage_dir}` |")
    return [*lines, "", "</details>"]


def render_comparison(comparison: Comparison, *, baseline: str = "kd", device: str | None = None) -> str:
    """The Markdown section of one comparison (no trailing markers)."""
    recipe = comparison.recipe
    data = recipe.data
    student = recipe.student
    budget = (f"{data.name}, input {data.input_size or 32}px"
              + (f", first {data.limit_train} training images" if data.limit_train else "")
              + (f", colour bias rho={data.bias.rho}" if data.bias else "")
              + f"; teacher {recipe.teacher.model.arch} {recipe.teacher.train.epochs} epochs; "
              + (f"students {student.model.arch} {student.train.epochs} epochs each" if student else ""))
    trained = [r for r in comparison.students if not r.cached and r.failure is None]
    compute = sum(r.train_seconds or 0.0 for r in [comparison.teacher, *comparison.students])
    lines = [f"### {recipe.name}: {', '.join(comparison.methods)} × seeds {comparison.seeds}", "",
             f"Budget: {budget}.", ""]
    if comparison.biased:
        lines += ["Bias flavours: aligned = every test image in its class colour, unbiased = random colour "
                  "(the test split), conflicting = never its class colour; gap = aligned − conflicting.", ""]
    lines += [*_table(comparison), ""]
    diff = _differences(comparison, baseline)
    if diff:
        lines += [*diff, ""]
    failures = [r for r in comparison.students if r.failure is not None]
    if failures:
        lines += ["Diverged (not in the means): " + "; ".join(f"{r.method} seed {r.seed}" for r in failures)
                  + f". First message: {failures[0].failure}", ""]
    lines += [*_details(comparison), "",
              f"- command: `{comparison.command}`",
              f"- date: {dt.datetime.now(dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
              f"- machine: {machine_line(device or _device_of(comparison))}",
              f"- wall time of this invocation: {comparison.wall_seconds:.0f} s "
              f"({len(trained)} of {len(comparison.students)} students trained, the rest cached); "
              f"training time recorded in the manifests: {compute:.0f} s", ""]
    return "\n".join(lines)


def _device_of(comparison: Comparison) -> str:
    from cidpipe.manifest import read_manifest

    env = read_manifest(comparison.teacher.stage_dir).env or {}
    return str(env.get("device", "cpu"))


def _markers(key: str) -> tuple[str, str]:
    return f"<!-- cidpipe compare {key}: begin -->", f"<!-- cidpipe compare {key}: end -->"


def write_section(path: Path, key: str, markdown: str) -> None:
    """Put ``markdown`` between the markers of ``key`` in ``path`` (replaced if present, else appended)."""
    begin, end = _markers(key)
    block = f"{begin}\n{markdown.rstrip()}\n{end}"
    text = path.read_text() if path.is_file() else ""
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _match: block, text, count=1)
    else:
        text = (text.rstrip() + "\n\n" if text.strip() else "") + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, text)

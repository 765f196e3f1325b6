"""``write_report``: report.md, a self-contained report.html and the PNGs, for one run or a comparison."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path

from cidpipe import __version__
from cidpipe.atomic import atomic_write_text
from cidpipe.errors import UsageError
from cidpipe.gate.rundir import RunData, load_run
from cidpipe.report.classes import confusion_table, per_class_table
from cidpipe.report.headline import headline, headline_sentence, headline_table
from cidpipe.report.plots import LATENCY_KEYS, plot_accuracy_latency, plot_training_curves
from cidpipe.report.quantization import quantization_table
from cidpipe.report.render import (
    Block,
    Collapsible,
    Heading,
    Image,
    Lead,
    Paragraph,
    Verdict,
    render_html,
    render_markdown,
)
from cidpipe.report.side_by_side import comparison_table, run_labels
from cidpipe.report.tables import (
    artifact_table,
    bias_table,
    device_state_table,
    env_table,
    gate_table,
    hash_table,
    model_table,
    seed_table,
)


def write_report(
    run_dirs: list[Path], out_dir: Path, *, html: bool = True, latency: str = "p50"
) -> dict[str, Path]:
    """Write the report of ``run_dirs`` (one run, or several side by side) into ``out_dir``.

    Returns the written paths: ``markdown``, ``html`` (when asked for) and one entry per PNG.
    """
    if not run_dirs:
        raise UsageError("no run directory given; pass runs/<name> (two or more to compare them)")
    if latency not in LATENCY_KEYS:
        raise UsageError(f"latency must be one of {', '.join(LATENCY_KEYS)}, got '{latency}'")
    runs = [load_run(Path(run_dir)) for run_dir in run_dirs]
    labels = run_labels(runs)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}

    title = f"cidpipe report: {' vs '.join(labels)}"
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    blocks: list[Block] = [Heading(title, 1), Paragraph(f"Generated {stamp} by cidpipe {__version__}.")]
    if len(runs) > 1:
        blocks += [Heading("Comparison"), comparison_table(runs)]

    scatter_path = out_dir / "accuracy_latency.png"
    scatter = plot_accuracy_latency(runs, labels, scatter_path, latency)
    scatter_image = None
    if scatter is not None:
        written["accuracy_latency"] = scatter_path
        scatter_image = Image(scatter_path.name, scatter, f"top-1 versus {latency} latency")
        if len(runs) > 1:  # both runs' points on one plot, right under the comparison table
            blocks += [Heading("Accuracy versus latency"), scatter_image]

    level = 2 if len(runs) == 1 else 3
    for run, label in zip(runs, labels, strict=True):
        if len(runs) > 1:
            blocks.append(Heading(f"Run {label}", 2))
        curves_path = out_dir / f"curves_{_slug(label)}.png"
        curves = plot_training_curves(run, curves_path)
        if curves is not None:
            written[f"curves_{_slug(label)}"] = curves_path
        image = None if curves is None else Image(curves_path.name, curves, f"training curves of {label}")
        blocks += _run_blocks(run, level, image, scatter_image if len(runs) == 1 else None)

    markdown_path = atomic_write_text(out_dir / "report.md", render_markdown(blocks))
    written["markdown"] = markdown_path
    if html:
        written["html"] = atomic_write_text(out_dir / "report.html", render_html(blocks, title))
    return written


def _run_blocks(run: RunData, level: int, curves: Image | None, scatter: Image | None) -> list[Block]:
    blocks: list[Block] = []
    rows = headline(run)
    sentence, table = headline_sentence(rows), headline_table(rows)
    if table is not None:  # first: what distillation bought
        blocks += [Heading("Headline", level)]
        blocks += [Lead(sentence)] if sentence else []
        blocks.append(table)
    blocks.append(
        Paragraph(f"Run directory {run.path} · recipe {run.recipe or '—'} · recipe id {run.recipe_id or '—'}")
    )
    if run.gate is not None:
        passed = bool(run.gate.get("passed"))
        counts = run.gate.get("counts") or {}
        text = (f"Gate {'passed' if passed else 'failed'}: {counts.get('failed', 0)} of "
                f"{counts.get('total', 0)} checks failed")  # fmt: skip
        blocks += [Heading("Gate verdict", level), Verdict(passed, text)]
        blocks += [Paragraph(str(note)) for note in run.gate.get("notes") or []]
        blocks.append(gate_table(run))
    blocks += [Heading("Models and artifacts", level), model_table(run)]
    tables = (seed_table(run), bias_table(run), quantization_table(run))
    blocks += [table for table in tables if table is not None]
    if run.results:
        blocks.append(artifact_table(run))
        blocks += [table for table in (per_class_table(run), confusion_table(run)) if table is not None]
        if run.reference_top1 is not None:
            reference = f"{run.reference_top1:.2f} %"
            blocks.append(Paragraph(f"Drop reference (FP32 PyTorch student, test top-1): {reference}"))
    if scatter is not None:
        blocks += [Heading("Accuracy versus latency", level), scatter]
    if curves is not None:
        blocks += [Heading("Training curves", level), curves]
    if run.recipe_text is not None:
        blocks += [Heading("Recipe", level)]
        other = run.stages_made_with_another_recipe()
        if other:
            blocks.append(Paragraph(
                f"Made with other settings than this recipe.yaml gives them (a verb's --set values, or an "
                f"edited recipe): {', '.join(other)}; their settings are in their manifests' config, and the "
                "recipe id above is the latest stage's."))
        blocks.append(Collapsible("recipe.yaml (resolved)", run.recipe_text, "yaml"))
    blocks += [Heading("Provenance", level), env_table(run), hash_table(run)]
    device_state = device_state_table(run)
    if device_state is not None:
        blocks.append(device_state)
    return blocks


def _slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", label).strip("_") or "run"

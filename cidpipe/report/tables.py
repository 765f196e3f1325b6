"""The report's tables, built once as plain strings and rendered by both the Markdown and HTML writers."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

from cidpipe.gate.numbers import bytes_to_mb, format_value
from cidpipe.gate.rundir import RunData, result_subject

MODEL_STAGES = ("teacher", "student")
DASH = "—"


@dataclass
class Table:
    title: str
    headers: list[str]
    rows: list[list[str]] = field(default_factory=list)
    # Rows whose first cell should be marked as failed (red) in HTML.
    failed_rows: set[int] = field(default_factory=set)


def pct(value: Any) -> str:
    return DASH if value is None else f"{float(value):.2f}"


def ms(value: Any) -> str:
    return DASH if value is None else format_value(float(value), "ms").removesuffix(" ms")


def count(value: Any) -> str:
    return DASH if value is None else f"{int(value):,}"


def size(value: Any) -> str:
    return DASH if value is None else format_value(bytes_to_mb(float(value)), "MB")


def seed_summary(metrics: dict[str, Any]) -> dict[str, tuple[float, float, int]]:
    """Mean, sample standard deviation (n-1) and n of val/test top-1 over the seeds that ran."""
    summary = {}
    for key in ("val_top1", "test_top1"):
        values = [float(seed[key]) for seed in metrics.get("seeds") or [] if seed.get(key) is not None]
        if values:
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            summary[key] = (statistics.fmean(values), spread, len(values))
    return summary


def _top1_cell(metrics: dict[str, Any], key: str) -> str:
    summary = seed_summary(metrics).get(key)
    if summary is None:
        return pct(metrics.get(key))
    mean, spread, n = summary
    return f"{mean:.2f} ± {spread:.2f} (n={n})"


def best_epoch_label(metrics: dict[str, Any]) -> str:
    """The selected epoch as the training log counts it (from 1); manifests store it from 0."""
    best = metrics.get("best_epoch")
    return str(best + 1) if isinstance(best, int) and not isinstance(best, bool) else DASH


def model_table(run: RunData) -> Table:
    headers = ["Stage", "Arch", "Params", "Val top-1 %", "Test top-1 %", "Best epoch", "Method"]
    table = Table("Models", headers)
    for stage in MODEL_STAGES:
        manifest = run.manifests.get(stage)
        if manifest is None:
            continue
        metrics = manifest.get("metrics") or {}
        model = manifest.get("model") or {}
        config = manifest.get("config") or {}
        method = config.get("method") if stage == "student" else None
        table.rows.append([
            stage, str(model.get("arch", DASH)), count(metrics.get("params")),
            _top1_cell(metrics, "val_top1"), _top1_cell(metrics, "test_top1"),
            best_epoch_label(metrics), str(method or DASH),
        ])  # fmt: skip
    return table


def seed_table(run: RunData) -> Table | None:
    table = Table("Seeds", ["Stage", "Seed", "Val top-1 %", "Test top-1 %"])
    for stage in MODEL_STAGES:
        for seed in run.metrics(stage).get("seeds") or []:
            values = [pct(seed.get("val_top1")), pct(seed.get("test_top1"))]
            table.rows.append([stage, str(seed.get("seed", DASH)), *values])
    return table if table.rows else None


def bias_table(run: RunData) -> Table | None:
    table = Table("Bias (biased data)", ["Stage", "Aligned %", "Unbiased %", "Conflicting %", "Gap (points)"])
    for stage in MODEL_STAGES:
        bias = run.metrics(stage).get("bias")
        if bias:
            keys = ("aligned", "unbiased", "conflicting", "gap")
            table.rows.append([stage, *(pct(bias.get(key)) for key in keys)])
    return table if table.rows else None


def _notes(result: dict[str, Any]) -> str:
    """What a reader should know about a row beyond its numbers."""
    notes = []
    if result.get("noisy"):
        notes.append(f"noisy (CoV {float((result.get('latency') or {}).get('cov', 0)):.3f})")
    if result.get("slower_than_fp32"):
        notes.append("slower than FP32 here")
    if (result.get("extra") or {}).get("accuracy_arithmetic"):
        notes.append("top-1 on its exact Q/DQ arithmetic (as TensorRT computes), latency on ORT")
    if result.get("error"):
        notes.append(str(result["error"]))
    return "; ".join(notes)


def _memory_cell(result: dict[str, Any]) -> str:
    """Peak RSS of the process that ran the row, and what the artifact added to it. A local row runs inside
    cidpipe (torch, the data: ~1 GB whatever the model), so the added part is the artifact's own cost; a
    device row's process loaded only the artifact and its peak is already that."""
    peak = size(result.get("peak_mem_bytes"))
    added = ((result.get("extra") or {}).get("peak_mem") or {}).get("added_bytes")
    return peak if not isinstance(added, int) or isinstance(added, bool) else f"{peak} [+{size(added)}]"


def _p50_cell(latency: dict[str, Any]) -> str:
    low, high = latency.get("p50_ci_low_ms"), latency.get("p50_ci_high_ms")
    text = ms(latency.get("p50_ms"))
    return text if low is None or high is None else f"{text} [{ms(low)}–{ms(high)}]"


def artifact_table(run: RunData) -> Table:
    headers = ["Model", "Format", "Device", "Batch", "Status", "Top-1 %", "Agreement %", "p50 ms [95% CI]",
               "p99 ms", "Throughput img/s", "Size", "Peak RSS [added by the artifact]", "Notes"]  # fmt: skip
    table = Table("Artifacts (agreement: with the same model's FP32 PyTorch predictions)", headers)
    for index, result in enumerate([*run.results, *run.teacher_results]):
        latency = result.get("latency") or {}
        throughput = result.get("throughput_ips")
        table.rows.append([
            str(result.get("role", "student")), str(result.get("format", DASH)),
            str(result.get("device", "local")), str(result.get("batch_size", 1)),
            str(result.get("status", DASH)), pct(result.get("top1")), pct(result.get("agreement")),
            _p50_cell(latency), ms(latency.get("p99_ms")),
            DASH if throughput is None else f"{float(throughput):,.0f}", size(result.get("size_bytes")),
            _memory_cell(result), _notes(result),
        ])  # fmt: skip
        if result.get("status") != "pass":
            table.failed_rows.add(index)
    return table


def gate_table(run: RunData) -> Table | None:
    if run.gate is None:
        return None
    table = Table("Gate checks", ["", "Check", "Measured", "Allowed", "Details"])
    for index, check in enumerate(run.gate.get("checks", [])):
        unit = check.get("unit", "")
        measured, allowed = check.get("measured"), check.get("allowed")
        outcome = check.get("outcome") or ("pass" if check.get("passed") else "fail")
        mark = {"pass": "✅", "fail": "❌"}.get(outcome, "⚪ not comparable")
        name = str(check.get("name")) + (" (noisy)" if check.get("noisy") else "")
        table.rows.append([
            mark, name,
            DASH if measured is None else format_value(measured, unit),
            DASH if allowed is None else format_value(allowed, unit), str(check.get("message", "")),
        ])  # fmt: skip
        if not check.get("passed"):
            table.failed_rows.add(index)
    return table


def env_table(run: RunData) -> Table:
    keys = ("cidpipe", "torch", "python", "device", "git_sha", "hostname")
    table = Table("Environment", ["Stage", *keys, "Finished"])
    for stage, manifest in run.manifests.items():
        env = manifest.get("env") or {}
        # A 12-character git sha identifies the commit and keeps the table narrow.
        values = [str(env.get(key, DASH))[: 12 if key == "git_sha" else None] for key in keys]
        table.rows.append([stage, *values, str(manifest.get("finished_at", DASH))])
    return table


def hash_table(run: RunData) -> Table:
    table = Table("Artifacts and hashes", ["Stage", "Name", "Path", "SHA-256", "Bytes"])
    for stage, manifest in run.manifests.items():
        for name, artifact in (manifest.get("artifacts") or {}).items():
            path, digest = str(artifact.get("path", DASH)), str(artifact.get("sha256", DASH))
            table.rows.append([stage, name, path, digest, count(artifact.get("bytes"))])
    return table


# Row extras that describe the accuracy pass, not the device: they have their own tables (per class,
# confusion) or a note in the artifact table.
_NOT_DEVICE_STATE = {"per_class_top1", "confusion", "eval_samples", "accuracy_arithmetic"}


def _state_value(value: Any) -> str:
    if isinstance(value, dict):
        return " ".join(f"{key}:{item}" for key, item in value.items() if item is not None) or DASH
    return str(value)


def device_state_table(run: RunData) -> Table | None:
    table = Table("Device state during the bench", ["Result", "Provider", "Threads", "State"])
    for result in run.results:
        extra = {k: v for k, v in (result.get("extra") or {}).items() if k not in _NOT_DEVICE_STATE}
        state = ", ".join(f"{key}={_state_value(value)}" for key, value in sorted(extra.items())) or DASH
        table.rows.append([result_subject(result), str(result.get("provider") or DASH),
                           str(result.get("threads", DASH)), state])  # fmt: skip
    return table if table.rows else None

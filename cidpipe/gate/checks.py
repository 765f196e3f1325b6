"""Apply a :class:`GateConfig` to a run directory and collect one :class:`Check` per threshold."""

from __future__ import annotations

import fnmatch
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from cidpipe.gate.baseline import baseline_checks, load_baseline
from cidpipe.gate.config import GateConfig, LatencyLimit
from cidpipe.gate.latency import latency_check, metric_ms
from cidpipe.gate.numbers import bytes_to_mb, compare_message, format_value
from cidpipe.gate.report import Check, GateReport
from cidpipe.gate.rundir import RunData, artifact_label, load_run, result_subject


def evaluate_gate(run_dir: Path, gate: GateConfig, baseline: dict[str, Any] | None = None) -> GateReport:
    """Judge ``run_dir`` against ``gate`` (and a baseline: passed in, or loaded from ``gate.baseline``)."""
    run = load_run(run_dir)
    report = GateReport(
        run=run.name,
        recipe=run.recipe,
        recipe_id=run.recipe_id,
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    if not gate.enabled:
        report.notes.append("gate disabled (gate.enabled: false); no checks ran")
        return report
    _require_measured_stages(run, gate)
    if baseline is None and gate.baseline is not None:
        baseline = load_baseline(gate.baseline)
    report.checks += status_checks(run)
    if gate.min_top1 is not None:
        report.checks += min_top1_checks(run, gate.min_top1)
    if gate.max_drop is not None:
        report.checks += max_drop_checks(run, gate.max_drop)
    for limit in gate.latency:
        report.checks += latency_checks(run, limit, gate.noisy_latency)
    if gate.max_size_mb is not None:
        report.checks += size_checks(run, gate.max_size_mb)
    if gate.max_bias_gap is not None:
        report.checks.append(bias_gap_check(run, gate.max_bias_gap))
    if baseline is not None:
        checks, notes, summary = baseline_checks(run, baseline, gate)
        report.checks += checks
        report.notes += notes
        report.baseline = summary
    if not report.checks:
        report.notes.append("no thresholds configured and no bench results: nothing was checked")
    return report


def _require_measured_stages(run: RunData, gate: GateConfig) -> None:
    """UsageError (exit 2) when a threshold has nothing to measure because a stage never ran: CI must tell
    "the pipeline stopped short" from "the model regressed" (exit 1)."""
    from cidpipe.errors import UsageError

    if gate.latency and "bench" not in run.manifests:
        raise UsageError(f"{run.path} has no bench stage, which gate.latency needs; run `cidpipe bench "
                         f"{run.path}` first (or `cidpipe run`)")
    if (gate.min_top1 is not None or gate.max_drop is not None) and "student" not in run.manifests \
            and not run.results:
        raise UsageError(f"{run.path} has no student stage, which gate.min_top1/max_drop measure; run "
                         "`cidpipe distill` first (or `cidpipe run`)")


def passing_results(run: RunData) -> list[dict[str, Any]]:
    return [result for result in run.results if result.get("status") == "pass"]


def status_checks(run: RunData) -> list[Check]:
    """Every benched artifact must have run: ``failed`` and ``exported-but-failed`` fail the gate."""
    checks = []
    for result in run.results:
        status = result.get("status", "failed")
        passed = status == "pass"
        message = (
            "status pass" if passed else f"status {status}: {result.get('error') or 'no error recorded'}"
        )
        checks.append(Check(f"status[{result_subject(result)}]", "status", passed, message))
    return checks


def _top1_by_subject(run: RunData) -> dict[str, float | None]:
    """Top-1 per format@device; the worst over batch sizes (they should agree; the worst is the safe bet)."""
    if not run.results:
        student_top1 = run.metrics("student").get("test_top1")
        return {} if student_top1 is None and "student" not in run.manifests else {"student": student_top1}
    top1: dict[str, float | None] = {}
    for result in passing_results(run):
        subject = result_subject(result, with_batch=False)
        value = result.get("top1")
        if subject not in top1 or (value is not None and (top1[subject] is None or value < top1[subject])):
            top1[subject] = value
    for result in run.results:  # a subject whose every row failed still gets its (failing) check
        top1.setdefault(result_subject(result, with_batch=False), None)
    return top1


def _no_top1_reason(run: RunData, subject: str) -> str:
    """Why ``subject`` has no top-1: its bench rows failed (say so, the status check has the error) or
    the bench never recorded one."""
    statuses = {str(r.get("status", "failed")) for r in run.results
                if result_subject(r, with_batch=False) == subject}
    if statuses and "pass" not in statuses:
        return f"not measured: every bench row of {subject} failed (status {', '.join(sorted(statuses))})"
    return f"no top-1 recorded for {subject}"


def _missing(name: str, kind: str, why: str) -> Check:
    """A configured threshold with nothing to measure fails: a gate must not pass by silence."""
    return Check(name, kind, False, why)


def min_top1_checks(run: RunData, minimum: float) -> list[Check]:
    subjects = _top1_by_subject(run)
    if not subjects:
        return [_missing("min_top1[run]", "min_top1", "no top-1 measured; run the student and bench stages")]
    checks = []
    for subject, top1 in subjects.items():
        name = f"min_top1[{subject}]"
        if top1 is None:
            checks.append(_missing(name, "min_top1", _no_top1_reason(run, subject)))
            continue
        passed = top1 >= minimum
        message = compare_message(top1, minimum, "%", passed, upper=False)
        checks.append(Check(name, "min_top1", passed, message, top1, minimum, "%"))
    return checks


def max_drop_checks(run: RunData, max_drop: float) -> list[Check]:
    reference = run.reference_top1
    if reference is None:
        why = "no FP32 reference top-1 (bench reference or student test_top1); run the student stage"
        return [_missing("max_drop[run]", "max_drop", why)]
    subjects = _top1_by_subject(run)
    if not subjects:
        return [_missing("max_drop[run]", "max_drop", "no artifact top-1 measured; run the bench stage")]
    checks = []
    for subject, top1 in subjects.items():
        name = f"max_drop[{subject}]"
        if top1 is None:
            checks.append(_missing(name, "max_drop", _no_top1_reason(run, subject)))
            continue
        drop = reference - top1
        passed = drop <= max_drop
        extra = f"FP32 reference {reference:.2f} %, artifact {top1:.2f} %"
        message = compare_message(drop, max_drop, "points", passed, upper=True, extra=extra)
        checks.append(Check(name, "max_drop", passed, message, drop, max_drop, "points"))
    return checks


def latency_checks(run: RunData, limit: LatencyLimit, noisy_policy: str = "flag") -> list[Check]:
    """``limit.metric`` (p50 or p99) of every matching passing row <= max_ms * (1 + tolerance)."""
    metric = limit.metric
    matching = [
        result
        for result in run.results
        if result.get("device", "local") == limit.device
        and int(result.get("batch_size", 1)) == limit.batch_size
        # The pattern names a format (every variant of it) or one variant: onnx-int8 or onnx-int8-trt.
        and any(fnmatch.fnmatchcase(name, limit.artifact) for name in (str(result.get("format", "")),
                                                                       artifact_label(result)))
    ]
    selector = f"{metric}[{limit.artifact}@{limit.device},bs={limit.batch_size}]"
    if not matching:
        why = (
            f"no bench result matches artifact '{limit.artifact}' on device '{limit.device}' at batch size "
            f"{limit.batch_size}; bench it or fix the gate's latency entry"
        )
        return [_missing(selector, metric, why)]
    allowed = limit.bound_ms * (1 + limit.tolerance)
    extra = ""
    if limit.tolerance:
        extra = f"limit {format_value(limit.bound_ms, 'ms')} +{limit.tolerance * 100:g} %"
    checks = []
    for result in matching:
        if result.get("status") != "pass":
            continue  # its status check already fails the gate; a second failure would only repeat it
        name = f"{metric}[{result_subject(result)}]"
        value = metric_ms(result, metric)
        if value is None:
            checks.append(_missing(name, metric, f"no {metric} latency recorded"))
            continue
        checks.append(latency_check(name, metric, result, value, allowed, noisy_policy, extra))
    return checks


def size_checks(run: RunData, max_size_mb: float) -> list[Check]:
    sizes: dict[str, float] = {}
    for result in run.results:
        if result.get("size_bytes") is not None:
            sizes.setdefault(artifact_label(result), bytes_to_mb(float(result["size_bytes"])))
    if not sizes:
        return [_missing("max_size[run]", "max_size", "no artifact sizes recorded; run the bench stage")]
    checks = []
    for artifact_format, size_mb in sizes.items():
        passed = size_mb <= max_size_mb
        message = compare_message(size_mb, max_size_mb, "MB", passed, upper=True)
        checks.append(
            Check(f"max_size[{artifact_format}]", "max_size", passed, message, size_mb, max_size_mb, "MB")
        )
    return checks


def bias_gap_check(run: RunData, max_gap: float) -> Check:
    bias = run.metrics("student").get("bias") or {}
    if bias.get("gap") is None:
        why = "the student has no bias metrics; max_bias_gap needs a biased dataset (data.bias) in the recipe"
        return _missing("bias_gap[student]", "bias_gap", why)
    gap = float(bias["gap"])
    passed = gap <= max_gap
    aligned, conflicting = bias.get("aligned"), bias.get("conflicting")
    extra = f"aligned {format_value(aligned, '%')}, conflicting {format_value(conflicting, '%')}"
    message = compare_message(gap, max_gap, "points", passed, upper=True, extra=extra)
    return Check("bias_gap[student]", "bias_gap", passed, message, gap, max_gap, "points")

"""Baselines: a run's key numbers saved as JSON, and the checks that compare a later run against them."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cidpipe import __version__
from cidpipe.atomic import atomic_write_text
from cidpipe.errors import UsageError
from cidpipe.gate.latency import clean_host, host_difference, latency_check, metric_ms
from cidpipe.gate.numbers import compare_message, format_value
from cidpipe.gate.report import Check
from cidpipe.gate.rundir import RunData, artifact_label, load_run, result_subject
from cidpipe.untrusted import load_json_file

if TYPE_CHECKING:
    from cidpipe.gate.config import GateConfig

BASELINE_KIND = "cidpipe-baseline"
BASELINE_SCHEMA = 1


def baseline_from_run(run: RunData) -> dict[str, Any]:
    """The numbers a later run is held to: top-1, p50/p99 and size per artifact x device x batch size.

    Each entry keeps the host that measured it (``host``) and whether its latency was noisy, so a later
    run on other hardware is "not comparable" for latency instead of a false regression.
    """
    results = []
    hosts: dict[str, dict[str, Any]] = {}
    for result in run.results:
        if result.get("status") != "pass":
            continue  # a failed artifact is no standard to hold a later run to
        latency = result.get("latency") or {}
        host = clean_host(result.get("host"))
        device = str(result.get("device", "local"))
        if host is not None:
            hosts.setdefault(device, host)
        results.append(
            {
                "subject": result_subject(result),
                "format": result.get("format"),
                "variant": result.get("variant"),
                "device": device,
                "batch_size": int(result.get("batch_size", 1)),
                "top1": result.get("top1"),
                "p50_ms": latency.get("p50_ms"),
                "p50_ci_low_ms": latency.get("p50_ci_low_ms"),
                "p50_ci_high_ms": latency.get("p50_ci_high_ms"),
                "p99_ms": latency.get("p99_ms"),
                "cov": latency.get("cov"),
                "noisy": bool(result.get("noisy", False)),
                "size_bytes": result.get("size_bytes"),
                "host": host,
            }
        )
    student = run.metrics("student")
    return {
        "kind": BASELINE_KIND,
        "schema": BASELINE_SCHEMA,
        "recipe": run.recipe,
        "recipe_id": run.recipe_id,
        "run": run.name,
        "cidpipe": __version__,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "student": {"val_top1": student.get("val_top1"), "test_top1": student.get("test_top1")},
        "hosts": hosts,
        "results": results,
    }


def save_baseline(run_dir: Path, path: Path) -> dict[str, Any]:
    """Write ``run_dir``'s key numbers to ``path`` (atomically) and return them."""
    baseline = baseline_from_run(load_run(run_dir))
    atomic_write_text(Path(path), json.dumps(baseline, indent=2, sort_keys=False) + "\n")
    return baseline


_HostValue = Annotated[str, Field(max_length=200)] | int


class _BaselineEntry(BaseModel):
    # strict: a baseline is JSON cidpipe wrote, so "97.7" (a string) or true (for a number) is a foreign or
    # hand-edited file, refused rather than coerced
    model_config = ConfigDict(extra="ignore", strict=True)
    subject: str | None = None
    format: str | None = None
    variant: str | None = Field(None, max_length=64)
    device: str = "local"
    batch_size: int = Field(1, ge=1)
    top1: float | None = Field(None, ge=0, le=100)
    p50_ms: float | None = Field(None, ge=0, allow_inf_nan=False)
    p50_ci_low_ms: float | None = Field(None, ge=0, allow_inf_nan=False)
    p50_ci_high_ms: float | None = Field(None, ge=0, allow_inf_nan=False)
    p99_ms: float | None = Field(None, ge=0, allow_inf_nan=False)
    cov: float | None = Field(None, ge=0, allow_inf_nan=False)
    noisy: bool = False
    size_bytes: int | None = Field(None, ge=0)
    host: dict[str, _HostValue] | None = Field(None, max_length=32)


class _BaselineStudent(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    val_top1: float | None = Field(None, ge=0, le=100)
    test_top1: float | None = Field(None, ge=0, le=100)


class _Baseline(BaseModel):
    """The shape a baseline file must have; a wrongly typed value is a usage error, not a crash later."""

    model_config = ConfigDict(extra="ignore", strict=True)
    kind: str
    schema_: Literal[1] = Field(BASELINE_SCHEMA, alias="schema")  # the only format this cidpipe reads
    recipe: str | None = None
    recipe_id: str | None = None
    run: str | None = None
    cidpipe: str | None = None
    created_at: str | None = None
    student: _BaselineStudent = _BaselineStudent()
    hosts: dict[str, dict[str, _HostValue]] = Field(default_factory=dict, max_length=1000)
    results: list[_BaselineEntry] = Field(default_factory=list, max_length=100_000)


def load_baseline(path: Path) -> dict[str, Any]:
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"baseline {path} is a directory; pass the baseline JSON file inside it")
    if not path.is_file():
        raise UsageError(
            f"baseline {path} not found (relative paths start at {Path.cwd()}); record one with "
            "`cidpipe gate RUN --save-baseline FILE`"
        )
    data = load_json_file(path, "baseline")
    if not isinstance(data, dict) or data.get("kind") != BASELINE_KIND:
        raise UsageError(f"{path} is not a cidpipe baseline (kind != {BASELINE_KIND}); record it again")
    try:
        typed = _Baseline.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise UsageError(
            f"baseline {path}: '{where}': {first['msg']} (got {first.get('input')!r:.60}); record it again"
        ) from None
    clean = typed.model_dump(by_alias=True)
    for raw, entry in zip(data.get("results") or [], clean["results"], strict=True):
        if "variant" not in raw:  # saved before rows named their variant: see _entry_matches
            del entry["variant"]
    clean["path"] = str(path)
    return clean


def baseline_checks(
    run: RunData, baseline: dict[str, Any], gate: GateConfig
) -> tuple[list[Check], list[str], dict[str, Any]]:
    """Checks against ``baseline``; a baseline of another recipe is a usage error, not a comparison."""
    label = baseline.get("path") or baseline.get("run") or "baseline"
    if baseline.get("recipe") != run.recipe:
        raise UsageError(
            f"baseline {label} was recorded for recipe {baseline.get('recipe')}, "
            f"this run is recipe {run.recipe}; "
            "pass the baseline of this recipe or record a new one"
        )
    notes = []
    if not baseline.get("results"):
        notes.append(f"baseline {label} holds no bench rows: only the student's top-1 is compared with it")
    same_id = baseline.get("recipe_id") == run.recipe_id
    if not same_id:
        notes.append(
            f"baseline {label} was recorded for recipe_id {_short(baseline.get('recipe_id'))}, this run has "
            f"{_short(run.recipe_id)}: the recipe changed since; thresholds still compare"
        )
    summary = {
        "path": baseline.get("path"),
        "run": baseline.get("run"),
        "recipe": baseline.get("recipe"),
        "recipe_id": baseline.get("recipe_id"),
        "recipe_id_matches": same_id,
        "created_at": baseline.get("created_at"),
    }
    checks = _top1_checks(run, baseline, gate.accuracy_tolerance) + _latency_checks(
        run, baseline, gate.latency_metric, gate.latency_tolerance, gate.noisy_latency
    )
    entries = baseline.get("results") or []
    unrecorded = sorted({result_subject(r, with_batch=False) for r in run.results
                         if not any(_entry_matches(e, r, with_batch=False) for e in entries)})
    if entries and unrecorded:  # e.g. an artifact that failed when the baseline was saved
        notes.append(f"baseline {label} has no row for {', '.join(unrecorded)}: not compared with it; record "
                     "a new baseline to include it")
    skipped = [check for check in checks if check.outcome == "not_comparable"]
    if skipped:
        notes.append(
            f"{len(skipped)} latency comparison(s) with baseline {label} are not comparable (measured on "
            "another host, or no host recorded): neither passed nor failed; accuracy was still compared"
        )
    return checks, notes, summary


def _entry_subject(entry: dict[str, Any]) -> str:
    """A baseline row as result_subject(..., with_batch=False) names a run row: 'onnx-int8@local'."""
    return f"{artifact_label(entry)}@{entry.get('device', 'local')}"


def _entry_matches(entry: dict[str, Any], result: dict[str, Any], with_batch: bool) -> bool:
    """Whether run row ``result`` is what baseline row ``entry`` measured. A baseline saved before rows
    named their variant (no ``variant`` key) knew a format only: it matches every graph of that format, as
    it was compared then, so upgrading does not fail a CI gate on a name."""
    if "variant" in entry:
        ours = result_subject(result, with_batch)
    else:
        ours = result_subject({**result, "variant": None}, with_batch)
    theirs = _entry_subject(entry) + (f",bs={entry.get('batch_size', 1)}" if with_batch else "")
    return ours == theirs


def _top1_checks(run: RunData, baseline: dict[str, Any], tolerance: float) -> list[Check]:
    entries = baseline.get("results") or []
    if not entries:  # a baseline without bench results still pins the student's accuracy
        base = (baseline.get("student") or {}).get("test_top1")
        current = run.metrics("student").get("test_top1")
        return [] if base is None else [_top1_check("baseline.top1[student]", current, base, tolerance)]
    by_subject: dict[str, float] = {}
    representative: dict[str, dict[str, Any]] = {}
    for entry in entries:
        subject = _entry_subject(entry)
        representative.setdefault(subject, entry)
        if entry.get("top1") is not None:
            by_subject[subject] = min(by_subject.get(subject, float("inf")), float(entry["top1"]))
    checks = []
    for subject, base in by_subject.items():
        matches = [r for r in run.results if _entry_matches(representative[subject], r, with_batch=False)]
        if matches and not any(r.get("status") == "pass" for r in matches):
            continue  # the status check already fails this artifact
        values = [r.get("top1") for r in matches if r.get("top1") is not None]
        checks.append(
            _top1_check(f"baseline.top1[{subject}]", min(values) if values else None, base, tolerance)
        )
    return checks


def _top1_check(name: str, current: float | None, base: float, tolerance: float) -> Check:
    if current is None:
        return Check(
            name, "baseline.top1", False, "not measured in this run; bench it or record a new baseline"
        )
    allowed = base - tolerance
    passed = current >= allowed
    extra = f"baseline {format_value(base, '%')} -{tolerance:g} points"
    return Check(
        name,
        "baseline.top1",
        passed,
        compare_message(current, allowed, "%", passed, False, extra),
        current,
        allowed,
        "%",
    )


def _latency_checks(
    run: RunData, baseline: dict[str, Any], metric: str, tolerance: float, noisy_policy: str
) -> list[Check]:
    """``metric`` of each baseline entry vs this run's rows, only where the same host measured both."""
    checks = []
    kind = f"baseline.{metric}"
    for entry in baseline.get("results") or []:
        base = entry.get(f"{metric}_ms")
        if base is None:
            continue
        subject = f"{_entry_subject(entry)},bs={entry.get('batch_size', 1)}"
        name = f"{kind}[{subject}]"
        matches = [r for r in run.results if _entry_matches(entry, r, with_batch=True)]
        if matches and not any(r.get("status") == "pass" for r in matches):
            continue
        measured = [(metric_ms(r, metric), r) for r in matches if r.get("status") == "pass"]
        measured = [(value, r) for value, r in measured if value is not None]
        if not measured:
            checks.append(
                Check(name, kind, False, "not measured in this run; bench it or record a new baseline")
            )
            continue
        current, row = max(measured, key=lambda pair: pair[0])
        different = host_difference(entry.get("host"), row.get("host"))
        if different is not None:
            checks.append(Check.not_comparable(name, kind, different))
            continue
        allowed = float(base) * (1 + tolerance)
        extra = f"baseline {format_value(float(base), 'ms')} +{tolerance * 100:g} %"
        if entry.get("noisy"):
            extra += "; the baseline row was noisy"
        checks.append(latency_check(name, kind, row, current, allowed, noisy_policy, extra))
    return checks


def _short(recipe_id: str | None) -> str:
    return "none" if not recipe_id else str(recipe_id)[:12]

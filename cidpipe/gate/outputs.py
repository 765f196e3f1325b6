"""The gate's outputs for CI: gate.json, JUnit XML and a Markdown summary for $GITHUB_STEP_SUMMARY."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

from cidpipe.atomic import atomic_write_bytes, atomic_write_text
from cidpipe.errors import UsageError
from cidpipe.gate.numbers import format_value
from cidpipe.gate.report import NOT_COMPARABLE, Check, GateReport
from cidpipe.untrusted import load_json_file

JUNIT_SUITE = "cidpipe-gate"


def write_gate_json(report: GateReport, path: Path) -> Path:
    """Write ``report.to_dict()``; the run's own copy lives at runs/<name>/gate/gate.json."""
    return atomic_write_text(Path(path), json.dumps(report.to_dict(), indent=2) + "\n")


def load_gate_json(path: Path) -> GateReport:
    data = load_json_file(Path(path), "gate report")
    if not isinstance(data, dict):
        raise UsageError(f"gate report {path} does not hold a JSON object; run the gate again")
    try:
        return GateReport.from_dict(data)
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise UsageError(f"gate report {path} is malformed ({err!r:.80}); run the gate again") from None


def write_junit(report: GateReport, path: Path) -> Path:
    """One testsuite ``cidpipe-gate``, one testcase per check, a <failure> with "measured vs allowed".

    A not-comparable check (latency vs a baseline from another host) is a <skipped> testcase: CI shows it
    as neither passed nor failed, and it does not fail the gate (exit 0 when everything else passed).
    """
    suites = ET.Element(
        "testsuites", name="cidpipe", tests=str(len(report.checks)), failures=str(len(report.failed))
    )
    suite = ET.SubElement(
        suites,
        "testsuite",
        name=JUNIT_SUITE,
        tests=str(len(report.checks)),
        failures=str(len(report.failed)),
        errors="0",
        skipped=str(len(report.not_comparable)),
        time="0",
        timestamp=report.created_at or "",
    )
    properties = ET.SubElement(suite, "properties")
    for key in ("run", "recipe", "recipe_id"):
        ET.SubElement(properties, "property", name=key, value=str(getattr(report, key) or ""))
    for check in report.checks:
        case = ET.SubElement(
            suite, "testcase", name=check.name, classname=f"{JUNIT_SUITE}.{check.kind}", time="0"
        )
        if check.outcome == NOT_COMPARABLE:
            ET.SubElement(case, "skipped", message=check.message)
        elif not check.passed:
            failure = ET.SubElement(case, "failure", message=check.message, type=check.kind)
            failure.text = f"{check.name}: {check.message}"
        else:
            ET.SubElement(case, "system-out").text = check.message
    if report.notes:
        ET.SubElement(suite, "system-out").text = "\n".join(report.notes)
    ET.indent(suites)
    data = ET.tostring(suites, encoding="utf-8", xml_declaration=True)
    return atomic_write_bytes(Path(path), data + b"\n")


def write_run_failure(run_dir: Path, stage: str, message: str, exit_code: int, *,
                      junit: Path | None = None, summary: Path | None = None) -> None:
    """The gate's outputs when ``cidpipe run`` stopped before the gate (or the gate itself could not judge
    the run, ``stage`` "gate": a missing stage, a broken baseline): a JUnit <error> and a Markdown line
    saying what failed, and no gate.json. CI publishes gate/junit.xml and summary.md whatever the exit code
    (docs/ci-example.yml); without this, a runner that keeps runs/ published the previous run's verdict,
    possibly green, for a job that failed."""
    gate_dir = Path(run_dir) / "gate"
    (gate_dir / "gate.json").unlink(missing_ok=True)
    if stage == "gate":
        text = f"the gate could not judge the run (exit {exit_code}): {message}"
    else:
        where = "in its pre-flight" if stage == "pre-flight" else f"at the {stage} stage"
        text = f"cidpipe run stopped {where} (exit {exit_code}) before the gate: {message}"
    suites = ET.Element("testsuites", name="cidpipe", tests="1", failures="0", errors="1")
    suite = ET.SubElement(suites, "testsuite", name=JUNIT_SUITE, tests="1", failures="0", errors="1",
                          skipped="0", time="0")  # fmt: skip
    case = ET.SubElement(suite, "testcase", name=f"run: {stage}", classname=f"{JUNIT_SUITE}.run", time="0")
    ET.SubElement(case, "error", message=text, type="run").text = text
    ET.indent(suites)
    atomic_write_bytes(junit or gate_dir / "junit.xml",
                       ET.tostring(suites, encoding="utf-8", xml_declaration=True))
    atomic_write_text(summary or gate_dir / "summary.md",
                      f"### ❌ cidpipe gate not reached: {Path(run_dir).name}\n\n{_cell(text)}\n")


def markdown_summary(report: GateReport) -> str:
    """A short Markdown verdict and a table with ✅/❌ per check."""
    skipped = len(report.not_comparable)
    aside = f", {skipped} not comparable" if skipped else ""
    if report.passed:
        head = f"### ✅ cidpipe gate passed: {report.run} ({len(report.checks)} checks{aside})"
    else:
        counts = f"{len(report.failed)} of {len(report.checks)} checks failed{aside}"
        head = f"### ❌ cidpipe gate failed: {report.run} ({counts})"
    lines = [head, "", f"Recipe `{report.recipe}` (id `{(report.recipe_id or 'none')[:12]}`)", ""]
    if report.checks:
        lines += ["| | Check | Measured | Allowed | Details |", "|---|---|---|---|---|"]
        for check in report.checks:
            mark = _mark(check)
            measured = format_value(check.measured, check.unit) if check.measured is not None else "—"
            allowed = format_value(check.allowed, check.unit) if check.allowed is not None else "—"
            lines.append(
                f"| {mark} | `{_cell(check.name)}` | {measured} | {allowed} | {_cell(check.message)} |"
            )
    for note in report.notes:
        lines.append(f"\n> {_cell(note)}")
    return "\n".join(lines) + "\n"


def write_markdown_summary(report: GateReport, path: Path, *, append: bool = False) -> Path:
    """Write the summary; ``append=True`` adds it to an existing file such as $GITHUB_STEP_SUMMARY."""
    path = Path(path)
    text = markdown_summary(report)
    if append:
        with path.open("a", encoding="utf-8") as summary:  # GitHub collects appends to this file per step
            summary.write(text)
        return path
    return atomic_write_text(path, text)


def _mark(check: Check) -> str:
    # not comparable: neither a pass nor a fail; noisy: judged, but on a row too variable to trust fully
    if check.outcome == NOT_COMPARABLE:
        return "⚪ not comparable"
    mark = "✅" if check.passed else "❌"
    return f"{mark} ⚠️ noisy" if check.noisy else mark


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")

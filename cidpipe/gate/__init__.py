"""The CI gate: thresholds and baselines applied to a finished run directory."""

from cidpipe.gate.baseline import load_baseline, save_baseline
from cidpipe.gate.checks import evaluate_gate
from cidpipe.gate.config import GateConfig, LatencyLimit
from cidpipe.gate.loading import load_gate_config
from cidpipe.gate.outputs import (
    load_gate_json,
    markdown_summary,
    write_gate_json,
    write_junit,
    write_markdown_summary,
)
from cidpipe.gate.report import Check, GateReport
from cidpipe.gate.rundir import GATE_JSON, RunData, load_run

__all__ = [
    "GATE_JSON",
    "Check",
    "GateConfig",
    "GateReport",
    "LatencyLimit",
    "RunData",
    "evaluate_gate",
    "load_baseline",
    "load_gate_config",
    "load_gate_json",
    "load_run",
    "markdown_summary",
    "save_baseline",
    "write_gate_json",
    "write_junit",
    "write_markdown_summary",
]

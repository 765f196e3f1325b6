"""docs/ci-example.yml is valid YAML and publishes what the gate writes."""

from __future__ import annotations

from pathlib import Path

import yaml

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "ci-example.yml"


def test_ci_example_runs_quickstart_gates_and_publishes() -> None:
    workflow = yaml.safe_load(EXAMPLE.read_text())
    steps = workflow["jobs"]["distill-and-gate"]["steps"]
    commands = "\n".join(step.get("run", "") for step in steps)
    assert "cidpipe run recipes/quickstart.yaml" in commands
    assert "cidpipe gate runs/quickstart" in commands and "--junit gate-junit.xml" in commands
    assert '>> "$GITHUB_STEP_SUMMARY"' in commands
    publishing = [step for step in steps if step.get("if") == "always()"]
    assert any("gate-junit.xml" in str(step.get("with", {})) for step in publishing)

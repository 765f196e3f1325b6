"""Gate files: YAML loading, unknown keys with a suggestion, baseline paths relative to the gate file."""

from __future__ import annotations

from pathlib import Path

import pytest

from cidpipe.errors import UsageError
from cidpipe.gate import load_gate_config


def test_loads_yaml_file_and_resolves_baseline_next_to_it(tmp_path: Path) -> None:
    gate_file = tmp_path / "ci" / "gate.yaml"
    gate_file.parent.mkdir()
    gate_file.write_text("min_top1: 95\nlatency:\n  - artifact: onnx-int8\n    max_p99_ms: 2.5\n"
                         "baseline: baselines/quickstart.json\n")  # fmt: skip
    gate = load_gate_config(gate_file)
    assert gate.min_top1 == 95 and gate.latency[0].max_p99_ms == 2.5 and gate.latency[0].device == "local"
    assert gate.baseline == tmp_path / "ci" / "baselines" / "quickstart.json"


def test_accepts_a_recipe_gate_section(tmp_path: Path) -> None:
    assert load_gate_config({"gate": {"max_drop": 1.0}}).max_drop == 1.0


def test_unknown_metric_names_the_key_and_suggests(tmp_path: Path) -> None:
    gate_file = tmp_path / "gate.yaml"
    gate_file.write_text("min_top_1: 95\n")
    with pytest.raises(UsageError, match=r"unknown key 'min_top_1'; did you mean 'min_top1'\?") as caught:
        load_gate_config(gate_file)
    assert caught.value.exit_code == 2


def test_unknown_latency_key_suggests_from_the_latency_entry() -> None:
    with pytest.raises(UsageError, match=r"'latency.0.max_p95_ms'; did you mean 'max_p99_ms'"):
        load_gate_config({"latency": [{"max_p95_ms": 3}]})


def test_bad_value_and_bad_yaml_are_usage_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="max_drop"):
        load_gate_config({"max_drop": "lots"})
    broken = tmp_path / "gate.yaml"
    broken.write_text("min_top1: [95\n")
    with pytest.raises(UsageError, match="not valid YAML"):
        load_gate_config(broken)
    with pytest.raises(UsageError, match="cannot read gate file"):
        load_gate_config(tmp_path / "absent.yaml")

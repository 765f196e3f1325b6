"""Killed with SIGKILL during the quantization-aware fine-tune, the quantize stage resumes from the
fine-tune's epoch checkpoint and publishes the same INT8 artifact, byte for byte, as the run that was never
killed."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml

from tests.conftest import run_cli, sigkill_when_file_appears, tiny_recipe_dict


@pytest.mark.slow
def test_sigkill_during_qat_then_resume_is_byte_identical(tmp_path):
    raw = tiny_recipe_dict(
        tmp_path / "runs", export={"enabled": True},
        quantize={"enabled": True, "mode": "int8", "calibration": {"samples": 64},
                  "qat": {"enabled": True, "epochs": 8, "regressor_samples": 256}},
    )
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(raw))
    straight = run_cli("run", str(recipe), "--device", "cpu")
    assert straight.returncode == 0, straight.stderr[-2000:]
    stage = tmp_path / "runs" / "tiny" / "quantize"
    expected = json.loads((stage / "manifest.json").read_text())
    shutil.rmtree(stage)  # teacher, student and export stay: the rerun reuses them

    sigkill_when_file_appears(["run", str(recipe), "--device", "cpu"], stage.parent,
                              ".quantize.partial-*/checkpoints/qat-cpu.pt")
    assert not (stage / "manifest.json").exists(), "a killed stage must not look finished"

    resumed = run_cli("run", str(recipe), "--device", "cpu")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "qat: resuming from the checkpoint after epoch" in resumed.stderr
    actual = json.loads((stage / "manifest.json").read_text())
    assert actual["id"] == expected["id"]
    assert actual["artifacts"]["int8"]["sha256"] == expected["artifacts"]["int8"]["sha256"]
    variant = lambda m: m["metrics"]["variants"]["int8"]  # noqa: E731
    assert variant(actual)["path"] == variant(expected)["path"] == "qat"
    strip = lambda h: [{k: v for k, v in r.items() if k != "seconds"} for r in h]  # noqa: E731
    assert strip(variant(actual)["qat"]["history"]) == strip(variant(expected)["qat"]["history"])
    assert not list(stage.parent.glob(".quantize.partial-*")), "the work directory is swapped into place"

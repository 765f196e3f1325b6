"""Killed with SIGKILL mid-run, `cidpipe train` resumes from its last epoch checkpoint and ends bit-identical
to a run that was never killed (same weights, same history); a rerun is cached."""

from __future__ import annotations

import json
import time

import yaml

from tests.conftest import run_cli, sigkill_when_file_appears, tiny_recipe_dict


def test_sigkill_then_resume_then_cached(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe_dict(tmp_path / "runs", teacher={"train": {"epochs": 12}})))
    run_dir = tmp_path / "runs" / "tiny"
    sigkill_when_file_appears(["train", str(recipe), "--device", "cpu"], run_dir,
                              ".teacher.partial-*/checkpoints/seed0.pt")
    assert not (run_dir / "teacher" / "manifest.json").exists(), "a killed stage must not look finished"

    resumed = run_cli("train", str(recipe), "--device", "cpu")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming from the checkpoint after epoch" in resumed.stderr
    assert (run_dir / "teacher" / "manifest.json").is_file()
    assert not list(run_dir.glob(".teacher.partial-*")), "the work directory is swapped into place"

    started = time.monotonic()
    cached = run_cli("train", str(recipe), "--device", "cpu")
    assert cached.returncode == 0 and "cached" in cached.stderr + cached.stdout
    assert time.monotonic() - started < 60

    # The same recipe trained straight through, in another run directory.
    straight_recipe = tmp_path / "straight.yaml"
    straight_recipe.write_text(
        yaml.safe_dump(tiny_recipe_dict(tmp_path / "straight", teacher={"train": {"epochs": 12}}))
    )
    straight = run_cli("train", str(straight_recipe), "--device", "cpu")
    assert straight.returncode == 0, straight.stderr[-2000:]
    killed_run = _manifest(run_dir / "teacher")
    straight_run = _manifest(tmp_path / "straight" / "tiny" / "teacher")
    assert killed_run["id"] == straight_run["id"]
    assert killed_run["artifacts"]["model"]["sha256"] == straight_run["artifacts"]["model"]["sha256"]
    assert _without_seconds(killed_run) == _without_seconds(straight_run)


def _manifest(stage_dir):
    return json.loads((stage_dir / "manifest.json").read_text())


def _without_seconds(manifest):
    """The epoch history without its wall-clock times (the only thing a resume may change)."""
    return [{k: v for k, v in record.items() if k != "seconds"} for record in manifest["metrics"]["history"]]

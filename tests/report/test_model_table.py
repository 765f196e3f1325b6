"""The report's and the CLI's "best epoch" count from 1, as the training log prints epochs."""

from __future__ import annotations

import json
from pathlib import Path

from cidpipe.report import write_report
from cidpipe.report.tables import best_epoch_label


def test_best_epoch_is_shown_as_the_log_counts_it():
    assert best_epoch_label({"best_epoch": 0}) == "1" and best_epoch_label({"best_epoch": 6}) == "7"
    assert best_epoch_label({}) == "—" and best_epoch_label({"best_epoch": True}) == "—"


def test_a_real_runs_model_table_matches_its_manifest(real_run: Path, tmp_path: Path) -> None:
    markdown = write_report([real_run], tmp_path / "out")["markdown"].read_text()
    best = json.loads((real_run / "student" / "manifest.json").read_text())["metrics"]["best_epoch"]
    models = markdown.split("**Models**", 1)[1].split("\n\n**", 1)[0]
    [row] = [line for line in models.splitlines() if line.startswith("| student |")]
    assert row.split("|")[6].strip() == str(best + 1)


def test_peak_memory_shows_what_the_artifact_added(real_run: Path, tmp_path: Path) -> None:
    """A local row's peak RSS is the whole cidpipe process (~1 GB for a KiB model): the column also says
    what the artifact itself added, from the row's own measurement."""
    markdown = write_report([real_run], tmp_path / "out")["markdown"].read_text()
    assert "Peak RSS [added by the artifact]" in markdown
    rows = json.loads((real_run / "bench" / "results.json").read_text())
    int8 = next(r for r in rows if r["format"] == "onnx-int8" and r.get("role") != "teacher")
    added = int8["extra"]["peak_mem"]["added_bytes"]
    if isinstance(added, int):  # the kernel let the peak be reset (Linux): the artifact's part is known
        assert any("[+" in line for line in markdown.splitlines() if "| onnx-int8 |" in line)

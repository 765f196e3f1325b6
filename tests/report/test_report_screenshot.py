"""Render report.html in headless Chromium and check the page is not blank (skipped without Chromium).

Set CIDPIPE_REPORT_SCREENSHOT=<path.png> to keep the screenshot for a human to look at.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from cidpipe.gate import evaluate_gate, load_gate_config, write_gate_json
from cidpipe.report import write_report
from tests.gate.fake_run import write_run

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium/google-chrome on PATH")
def test_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    run = write_run(tmp_path)
    gate = load_gate_config({"min_top1": 96.0, "latency": [{"artifact": "onnx-*", "max_p99_ms": 0.5}]})
    write_gate_json(evaluate_gate(run, gate, None), run / "gate" / "gate.json")
    page = write_report([run], tmp_path / "report")["html"]
    screenshot = tmp_path / "screenshot.png"
    command = [
        str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={tmp_path / 'chromium-profile'}", f"--screenshot={screenshot}",
        "--window-size=1280,2000", page.resolve().as_uri(),
    ]  # fmt: skip
    completed = subprocess.run(command, capture_output=True, text=True, timeout=90, check=False)
    assert completed.returncode == 0 and screenshot.is_file(), completed.stderr[-2000:]
    pixels = imread(screenshot)[..., :3]
    assert pixels.shape[:2] == (2000, 1280)
    non_white = np.mean(np.any(pixels < 0.9, axis=-1))
    assert non_white > 0.02, f"page looks blank ({non_white:.1%} non-white pixels)"
    # The red of a failed gate and the blue of the plot's points are both on the first screen.
    assert np.any((pixels[..., 0] > 0.9) & (pixels[..., 1] < 0.95) & (pixels[..., 2] < 0.95))
    keep = os.environ.get("CIDPIPE_REPORT_SCREENSHOT")
    if keep:
        shutil.copyfile(screenshot, keep)

"""The real tiny run's report.html in headless Chromium: the page and its plots show up as a reader sees them.

Skipped without Chromium (scripts/test.sh installs it on CI). Set CIDPIPE_REAL_REPORT_SCREENSHOT=<path.png>
to keep the screenshot for a human to look at.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from matplotlib.colors import to_rgb
from matplotlib.image import imread

from cidpipe.report.plots_latency import ROLE_COLOURS

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
# Tall enough to reach the figures below the headline and tables; the first 2000 px are the first screen.
WINDOW = (1200, 6000)
FIRST_SCREEN = 2000


def screenshot(page: Path, out: Path, profile: Path) -> np.ndarray:
    """RGB pixels (0..1) of ``page`` rendered headless at WINDOW."""
    command = [
        str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={profile}", f"--screenshot={out}", f"--window-size={WINDOW[0]},{WINDOW[1]}",
        page.resolve().as_uri(),
    ]  # fmt: skip
    completed = subprocess.run(command, capture_output=True, text=True, timeout=90, check=False)
    assert completed.returncode == 0 and out.is_file(), completed.stderr[-2000:]
    return imread(out)[..., :3]


def share_near(pixels: np.ndarray, colour: str, tolerance: float = 0.06) -> float:
    return float(np.mean(np.all(np.abs(pixels - np.array(to_rgb(colour))) < tolerance, axis=-1)))


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium/chromium-browser/google-chrome on PATH")
def test_real_report_screenshot_shows_the_page_and_both_roles(real_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.png"
    pixels = screenshot(real_run / "report" / "report.html", out, tmp_path / "chromium-profile")
    keep = os.environ.get("CIDPIPE_REAL_REPORT_SCREENSHOT")
    if keep:  # before the asserts: a failing page is the one a human most needs to see
        shutil.copyfile(out, keep)
    assert pixels.shape[:2] == (WINDOW[1], WINDOW[0])
    non_white = float(np.mean(np.any(pixels[:FIRST_SCREEN] < 0.9, axis=-1)))
    assert non_white > 0.02, f"first screen looks blank ({non_white:.1%} non-white pixels)"
    assert out.stat().st_size > 100_000  # text, tables and figures, not a blank page
    # The teacher's blue and the student's orange (markers, CI bars, curves) are on the page: the
    # stylesheet uses neither colour, so these pixels come from the embedded figures.
    assert share_near(pixels, ROLE_COLOURS["teacher"]) > 1e-4
    assert share_near(pixels, ROLE_COLOURS["student"]) > 1e-4

"""A finished tiny run (every stage, teacher benched too) shared by the CLI contract tests of this folder."""

from __future__ import annotations

import pytest
import yaml

from tests.conftest import json_reply, run_cli, tiny_recipe_dict

SECTIONS = {
    "teacher": {"train": {"epochs": 1}},
    "student": {"train": {"epochs": 2}},
    "export": {"enabled": True, "parity": {"samples": 32}},
    "quantize": {"enabled": True, "calibration": {"samples": 32}},
    "bench": {"enabled": True, "runs": 2, "min_seconds": 0.0, "warmup_runs": 1, "max_eval_samples": 32},
    "gate": {"enabled": True, "min_top1": 1.0},
    "report": {"enabled": True, "html": False},
}


@pytest.fixture(scope="session")
def json_run(tmp_path_factory):
    """(root, recipe path, run dir, the run's --json result) plus root/digit.png, a real digits image."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    root = tmp_path_factory.mktemp("json")
    recipe = root / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe_dict(root / "runs", **SECTIONS)))
    done = run_cli("run", str(recipe), "--device", "cpu", "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    digits = load_digits()
    pixels = (digits.images[0] / 16.0 * 255).astype(np.uint8)
    Image.fromarray(pixels, mode="L").save(root / "digit.png")
    return root, recipe, root / "runs" / "tiny", json_reply(done)

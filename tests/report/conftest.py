"""Fixtures for the report tests: the gate tests' fake run directories, and one real tiny run.

The fake runs (tests/gate/fake_run.py) pin exact numbers; the real run is what `cidpipe run` writes for a
two-epoch digits recipe with export, INT8, a teacher and student bench at batch 1 and 8, and the report.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.conftest import run_cli, tiny_recipe_dict
from tests.gate.fake_run import write_run

REAL_BATCH_SIZES = [1, 8]


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return write_run(tmp_path)


@pytest.fixture(scope="session")
def real_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """runs/tiny of a real `cidpipe run` (about 25 s on one core), shared by the report tests."""
    root = tmp_path_factory.mktemp("real-run")
    two_epochs = {"epochs": 2, "lr": 0.1, "schedule": "cosine"}
    recipe = tiny_recipe_dict(
        root / "runs",
        teacher={"train": two_epochs},
        student={"train": two_epochs},  # CID warms up for one epoch: its CE part starts at epoch 1
        export={"enabled": True},
        quantize={"enabled": True},
        bench={"enabled": True, "batch_sizes": REAL_BATCH_SIZES, "runs": 10, "min_seconds": 0.0,
               "warmup_runs": 1, "warmup_seconds": 0.0, "max_eval_samples": 64},  # fmt: skip
        report={"enabled": True},
    )
    path = root / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    proc = run_cli("run", str(path), cwd=root)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return root / "runs" / "tiny"

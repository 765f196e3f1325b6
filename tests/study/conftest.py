"""One tiny comparison (digits, tinycnn, 2 methods x 2 seeds) shared by the tests of tests/study."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cidpipe.config import load_recipe
from cidpipe.stages.contract import StageOptions
from cidpipe.study.compare import Comparison, run_comparison
from tests.conftest import tiny_recipe_dict

TINY_METHODS = ["ce", "kd"]
TINY_SEEDS = [0, 1]


@pytest.fixture(scope="session")
def tiny_study(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Comparison]:
    """(recipe file, Markdown file, result) of a comparison trained once per session."""
    base = tmp_path_factory.mktemp("study")
    recipe_path = base / "recipe.yaml"
    recipe_path.write_text(yaml.safe_dump(tiny_recipe_dict(base / "runs", teacher={"train": {
        "epochs": 3, "lr": 0.05, "schedule": "cosine"}})))
    markdown = base / "results.md"
    markdown.write_text("# Results\n\nText a person wrote stays.\n")
    result = run_comparison(load_recipe(recipe_path), methods=TINY_METHODS, seeds=TINY_SEEDS,
                            options=StageOptions(device="cpu"), out=markdown, command="tiny-compare")
    return recipe_path, markdown, result

"""What the two training stages (teacher and student) share at plan time; their fitting is fit_stage.py."""

from __future__ import annotations

from typing import Any

from cidpipe.config import Recipe
from cidpipe.manifest import sha256_file
from cidpipe.stages.contract import Stage


class TrainingStage(Stage):
    """A stage that trains (or imports) a model: its data, weights files and run directory are checked when
    the run is planned, and a weights file's content, not just its path, is part of its id."""

    def validate(self, recipe: Recipe) -> None:
        from cidpipe.preflight import preflight_training

        preflight_training(recipe)

    def recipe_view(self, config: dict[str, Any]) -> dict[str, Any]:
        # The weights file's sha256 is in the id so that new contents at the same path retrain.
        return {(f"the contents of {key.removesuffix('_weights_sha256')}.model.weights"
                 if key.endswith("_weights_sha256") else key): value for key, value in config.items()}

    @staticmethod
    def with_weights_sha(config: dict[str, Any], model_cfg, key: str) -> dict[str, Any]:
        weights = model_cfg.weights
        if weights is not None and weights.is_file():
            config[key] = sha256_file(weights)
        return config

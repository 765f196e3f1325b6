"""What the two training stages (teacher and student) share at plan time; their fitting is fit_stage.py."""

from __future__ import annotations

from pathlib import Path
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

    def plan_note(self, recipe: Recipe) -> str | None:
        """Imported weights with another class count than the data's: the plan says the head is reset (and
        the teacher trained), as the stage will, instead of a bare "not run yet"."""
        from cidpipe.data.registry import dataset_channels, planned_class_count
        from cidpipe.modelio import load_weights
        from cidpipe.models.sources import check_weights_fit

        model = getattr(recipe, self.name).model
        if model.weights is None or not Path(model.weights).is_file():
            return None
        classes = planned_class_count(recipe.data)
        if classes is None:
            return None
        report = check_weights_fit(model, dataset_channels(recipe.data.name),
                                   load_weights(Path(model.weights), lazy=True), str(model.weights), classes)
        if report is None or not report.head_reset:
            return None
        note = (f"{Path(model.weights).name} has a {report.checkpoint_classes}-class classifier and the data "
                f"{classes} classes: the head is re-initialised")
        if self.name == "teacher":
            epochs = getattr(recipe, self.name).train.epochs
            note += f" and the teacher trained for {epochs} epoch{'s' * (epochs != 1)} (teacher.train.epochs)"
        return note

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

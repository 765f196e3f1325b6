"""The plan's reason for rerunning a stage: the keys that differ from the finished stage's manifest."""

from __future__ import annotations

from pathlib import Path

from cidpipe.config import validate_recipe
from cidpipe.manifest import Manifest
from cidpipe.stage_changes import config_changes, describe_change
from cidpipe.stages.distill import STUDENT
from cidpipe.stages.train import TEACHER
from tests.conftest import tiny_recipe_dict


def _manifest(config: dict, parents: dict | None = None) -> Manifest:
    return Manifest(stage="student", id="old", config=config, parents=parents or {})


def test_nested_keys_are_dotted_and_a_key_on_one_side_only_counts():
    old = {"train": {"lr": 0.1, "epochs": 4}, "gone": 1}
    new = {"train": {"lr": 0.05, "epochs": 4}, "added": [1, 2]}
    assert config_changes(old, new) == [("added", None, [1, 2]), ("gone", 1, None), ("train.lr", 0.1, 0.05)]
    assert config_changes(old, old) == []


def test_many_changes_are_counted_and_long_values_shortened():
    old = {f"k{i}": i for i in range(5)} | {"path": "a" * 60}
    new = {f"k{i}": i + 1 for i in range(5)} | {"path": "b" * 60}
    reason = describe_change(_manifest(old), new, {}, lambda config: {"x": config})
    assert reason.startswith("changed: x.k0 0 → 1; x.k1 1 → 2; x.k2 2 → 3 and 3 more keys")
    one_long = describe_change(_manifest({"path": "a" * 60}), {"path": "b" * 60}, {})
    assert one_long == f"changed: path {'a' * 23}… → {'b' * 23}…"


def test_values_compare_as_the_manifest_stores_them():
    """A tuple or a Path in the new config equals the list or string JSON made of it: no false change."""
    stored = {"size": [32, 32], "root": "/data"}
    assert describe_change(_manifest(stored), {"size": (32, 32), "root": Path("/data")}, {}) == (
        "config or a parent changed"
    )


def test_same_config_with_another_parent_names_the_parent():
    manifest = _manifest({"a": 1}, {"teacher": "t1"})
    reason = describe_change(manifest, {"a": 1}, {"teacher": "t2"})
    assert reason == "the teacher it was made from changed"


def test_stage_keys_are_named_as_the_recipe_names_them(tmp_path):
    """Each side's method section under its own method: kd's keys are distill.kd's, not distill.cid's."""
    recipe = validate_recipe(tiny_recipe_dict(tmp_path))
    made_with_kd = validate_recipe(tiny_recipe_dict(tmp_path, distill={"method": "kd"}))
    reason = describe_change(_manifest(STUDENT.config(made_with_kd)), STUDENT.config(recipe), {},
                             STUDENT.recipe_view)
    kd_keys, cid_keys = len(made_with_kd.distill.kd.model_dump()), len(recipe.distill.cid.model_dump())
    assert reason == (f"changed: distill.method kd → cid; distill.cid unset → {{{cid_keys} keys}}; "
                      f"distill.kd {{{kd_keys} keys}} → unset")
    view = STUDENT.recipe_view(STUDENT.config(recipe))
    assert view["distill"]["method"] == "cid" and "class_weight" in view["distill"]["cid"]
    assert set(view) == {"data", "student", "distill"}
    sha = {"teacher_weights_sha256": "ab"}
    assert TEACHER.recipe_view(sha) == {"the contents of teacher.model.weights": "ab"}

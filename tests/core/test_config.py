"""The recipe schema: strict keys with near-miss hints, overrides, bundled recipes, JSON schema."""

from __future__ import annotations

from pathlib import Path

import pytest

from cidpipe.config import (
    apply_overrides,
    bundled_recipes_dir,
    load_recipe,
    recipe_json_schema,
    validate_recipe,
)
from cidpipe.errors import ConfigError, UsageError

MINIMAL = {"name": "r", "teacher": {"model": {"arch": "resnet8"}}}


def test_defaults_are_the_papers_schedule():
    recipe = validate_recipe(dict(MINIMAL))
    assert recipe.teacher.train.epochs == 240
    assert recipe.teacher.train.milestones == [150, 180, 210]
    assert recipe.distill.cid.temperature == 4.0
    assert recipe.distill.method == "cid"


@pytest.mark.parametrize(
    "raw, expected",
    [
        ({**MINIMAL, "dat": {}}, "unknown key 'dat' (did you mean 'data'?)"),
        ({**MINIMAL, "data": {"nme": "digits"}}, "unknown key 'data.nme' (did you mean 'data.name'?)"),
        ({**MINIMAL, "distill": {"cid": {"sampl_weight": 3}}}, "did you mean 'distill.cid.sample_weight'?"),
        ({**MINIMAL, "data": {"batch_size": "many"}}, "'data.batch_size'"),
        ({"name": "r"}, "missing required key 'teacher'"),
        # Union members are tagged inside pydantic ('data.input_size.hw.0'): the key is shown as written.
        ({**MINIMAL, "data": {"input_size": 4}}, "'data.input_size': Input should be greater than or equal"),
        ({**MINIMAL, "data": {"input_size": [16, 4]}}, "'data.input_size[1]': Input should be greater"),
        ({**MINIMAL, "data": {"std": [0.2, 0.0, 0.2]}}, "'data.std[1]': Input should be greater than 0"),
        # ImageNet statistics on mmcv's 0..255 scale, a common paste: refused with the fix.
        ({**MINIMAL, "data": {"mean": [123.675, 116.28, 103.53]}},
         "'data.mean': values are on the 0..1 scale of pixel/255; divide 0..255 values"),
        ({**MINIMAL, "teacher": {"model": {"arch": "resnet8"}, "input": {"std": [58.4, 57.1, 57.4]}}},
         "'teacher.input.std': values are on the 0..1 scale"),
    ],
)
def test_bad_recipes_name_the_key(raw, expected):
    with pytest.raises(ConfigError) as err:
        validate_recipe(raw)
    assert expected in str(err.value)
    assert "\n" not in str(err.value)


def test_overrides_parse_yaml_values_and_reject_unknown_keys():
    raw = apply_overrides(
        {**MINIMAL}, ["teacher.train.epochs=3", "distill.cid.class_weight=0.5", "bench.batch_sizes=[1, 8]"]
    )
    recipe = validate_recipe(raw)
    assert recipe.teacher.train.epochs == 3
    assert recipe.distill.cid.class_weight == 0.5
    assert recipe.bench.batch_sizes == [1, 8]
    with pytest.raises(
        ConfigError, match="no key 'teacher.train.epoks'.*did you mean 'teacher.train.epochs'"
    ):
        apply_overrides({**MINIMAL}, ["teacher.train.epoks=3"])
    with pytest.raises(UsageError, match="key.sub=value"):
        apply_overrides({**MINIMAL}, ["teacher.train.epochs"])


def test_a_bad_set_value_inside_a_list_is_blamed_on_the_flag(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: r\nteacher: {model: {arch: resnet8}}\n")
    with pytest.raises(ConfigError) as err:
        load_recipe(recipe, ["data.input_size=[4, 16]"])
    assert str(err.value).startswith(f"--set data.input_size=[4, 16] (on {recipe}): 'data.input_size[0]'")


@pytest.mark.parametrize("override, message", [
    ("quantize.qat.enabled=maybe",
     "'quantize.qat.enabled': Input should be a valid boolean or 'auto' (got 'maybe')"),
    ("data.mean=0.5",
     "'data.mean': give 'auto' or one value per channel on the 0..1 scale, e.g. [0.5, 0.5, 0.5] (got 0.5)"),
    ("data.std=none", "'data.std': give 'auto' or one value per channel"),
])
def test_a_key_of_several_forms_names_every_form_it_takes(tmp_path, override, message):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: r\nteacher: {model: {arch: resnet8}}\n")
    with pytest.raises(ConfigError) as err:
        load_recipe(recipe, [override])
    assert message in str(err.value)
    assert load_recipe(recipe, ["data.mean=auto", "quantize.qat.enabled=auto"]).data.mean == "auto"


def test_the_shown_recipe_has_every_key_and_reads_back_to_the_same_ids(tmp_path):
    """`recipes show` and runs/<name>/recipe.yaml show the keys the ids leave out at their defaults
    (quantize.qat, select, the documented model.weights), and reading that back changes no id."""
    from cidpipe.config import dump_recipe_yaml
    from cidpipe.pipeline import _planned_ids

    for path in sorted(bundled_recipes_dir().glob("*.yaml")):
        if path.stem.startswith("devices"):  # device inventories live there too
            continue
        recipe = load_recipe(path)
        shown = tmp_path / path.name
        shown.write_text(dump_recipe_yaml(recipe))
        again = load_recipe(shown)
        assert _planned_ids(again) == _planned_ids(recipe), path.name
        assert again.recipe_id() == recipe.recipe_id(), path.name
        text = shown.read_text()
        assert "checkpoint:" not in text and "    weights:" in text, path.name
        assert "  qat:\n" in text and "    select:" in text, path.name


def test_every_bundled_recipe_validates():
    names = [p.stem for p in bundled_recipes_dir().glob("*.yaml") if not p.stem.startswith("devices")]
    assert "quickstart" in names
    for name in names:
        assert load_recipe(name).name


def test_unknown_bundled_recipe_suggests():
    with pytest.raises(UsageError, match="did you mean 'quickstart'"):
        load_recipe("quikstart")


def test_json_schema_lists_every_section():
    schema = recipe_json_schema()
    for section in ("data", "teacher", "student", "distill", "quantize", "export", "bench", "gate", "report"):
        assert section in schema["properties"]


def test_recipe_id_changes_with_content():
    a = validate_recipe(dict(MINIMAL))
    b = validate_recipe({**MINIMAL, "distill": {"cid": {"class_weight": 2.0}}})
    assert a.recipe_id() != b.recipe_id()
    assert a.recipe_id() == validate_recipe(dict(MINIMAL)).recipe_id()


def test_recipe_id_ignores_where_the_run_lives_and_how_it_is_gated():
    a = validate_recipe(dict(MINIMAL))
    moved = validate_recipe({**MINIMAL, "out_dir": "/elsewhere/runs", "description": "CI copy",
                             "gate": {"accuracy_tolerance": 2.0, "baseline": "base.json"}})  # fmt: skip
    assert moved.recipe_id() == a.recipe_id()
    assert a.at_run_directory(Path("/ci/runs/renamed")).recipe_id() == a.recipe_id()


def test_published_json_schema_is_current():
    """docs/recipe.schema.json is what `cidpipe recipes schema` prints (regenerate it on schema changes)."""
    import json
    from pathlib import Path

    published = Path(__file__).resolve().parents[2] / "docs" / "recipe.schema.json"
    assert json.loads(published.read_text()) == json.loads(json.dumps(recipe_json_schema(), default=str)), (
        "run: cidpipe recipes schema > docs/recipe.schema.json"
    )

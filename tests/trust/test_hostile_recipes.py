"""Hostile and broken recipes, --set values and --out directories through the real CLI.

Each case: the documented exit code, one line saying what to fix, no traceback, nothing written outside
the run directory, and (where a stage would have trained) no compute spent: the check happens at plan time.
"""

from __future__ import annotations

import pytest
import yaml

from tests.conftest import run_cli, tiny_recipe_dict
from tests.trust.hostile import BOMB, assert_clean_failure, assert_nothing_outside, tree_snapshot


def _write(tmp_path, text: str | bytes, name: str = "recipe.yaml"):
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def _recipe(tmp_path, **sections):
    return _write(tmp_path, yaml.safe_dump(tiny_recipe_dict(tmp_path / "runs", **sections)))


def _fails_cleanly(tmp_path, args, code, needle, *, timeout=120):
    before = tree_snapshot(tmp_path)
    result = run_cli(*args, cwd=tmp_path, timeout=timeout)
    line = assert_clean_failure(result, code, needle)
    assert_nothing_outside(before, tree_snapshot(tmp_path), allowed_prefix="runs")
    runs = tmp_path / "runs"
    assert not runs.exists() or not list(runs.rglob("manifest.json")), "no stage may be published"
    return line


@pytest.mark.parametrize("name", ["..", ".", ".hidden", "a/b", "../escape", "x" * 101, ""])
def test_a_run_name_must_be_one_safe_path_component(tmp_path, name):
    """name: '..' used to make <out>/.. the run directory and replace a sibling teacher/ folder."""
    out = tmp_path / "out"
    out.mkdir()
    sibling = tmp_path / "teacher"
    sibling.mkdir()
    (sibling / "precious.txt").write_text("not cidpipe's")
    recipe = tiny_recipe_dict(out)
    recipe["name"] = name
    path = _write(tmp_path, yaml.safe_dump(recipe))
    before = tree_snapshot(tmp_path)
    result = run_cli("train", str(path), "--device", "cpu", cwd=tmp_path)
    assert_clean_failure(result, 2, "name")
    assert (sibling / "precious.txt").read_text() == "not cidpipe's"
    assert tree_snapshot(tmp_path) == before


def test_a_yaml_alias_bomb_is_refused_quickly(tmp_path):
    text = BOMB + "name: bomb\nteacher: {model: {arch: tinycnn}}\ndistill: {ce: *i}\n"
    _fails_cleanly(tmp_path, ["run", str(_write(tmp_path, text)), "--dry-run"], 2, "expands to more than",
                   timeout=60)  # fmt: skip


def test_an_alias_bomb_in_a_typed_list_is_refused_too(tmp_path):
    text = BOMB + "name: bomb\nteacher: {model: {arch: tinycnn}}\nbench: {devices: *i}\n"
    _fails_cleanly(tmp_path, ["run", str(_write(tmp_path, text)), "--dry-run"], 2, "expands to more than",
                   timeout=60)  # fmt: skip


def test_distill_ce_takes_no_free_form_keys(tmp_path):
    path = _recipe(tmp_path, distill={"method": "ce", "ce": {"anything": [1, 2, 3]}})
    _fails_cleanly(tmp_path, ["run", str(path), "--dry-run"], 2, "distill.ce.anything")


def test_a_deeply_nested_recipe_is_one_line(tmp_path):
    text = "name: deep\nteacher: {model: {arch: tinycnn}}\ndescription: " + "[" * 5000 + "]" * 5000 + "\n"
    _fails_cleanly(tmp_path, ["run", str(_write(tmp_path, text)), "--dry-run"], 2, "nested too deeply")


def test_a_recipe_that_is_not_utf8_is_one_line(tmp_path):
    path = _write(tmp_path, b"name: caf\xe9\nteacher: {model: {arch: tinycnn}}\n")
    _fails_cleanly(tmp_path, ["run", str(path), "--dry-run"], 2, "not UTF-8")


def test_a_huge_recipe_file_is_refused_before_it_is_read(tmp_path):
    path = tmp_path / "recipe.yaml"
    with open(path, "wb") as handle:
        handle.truncate(17 * 1024 * 1024)  # sparse: costs no disk
    _fails_cleanly(tmp_path, ["run", str(path), "--dry-run"], 2, "limit")


@pytest.mark.parametrize("value", ["[1,", "{a: b", "'unterminated", "*nosuchalias"])
def test_a_set_value_that_is_not_yaml_is_a_usage_error(tmp_path, value):
    path = _recipe(tmp_path)
    _fails_cleanly(tmp_path, ["run", str(path), "--dry-run", "--set", f"data.batch_size={value}"], 2,
                   "--set data.batch_size")  # fmt: skip


def test_out_that_is_a_file_is_a_usage_error(tmp_path):
    (tmp_path / "afile").write_text("x")
    path = _recipe(tmp_path)
    _fails_cleanly(tmp_path, ["train", str(path), "--device", "cpu", "--out", str(tmp_path / "afile")], 2,
                   "is a file")  # fmt: skip
    assert (tmp_path / "afile").read_text() == "x"


def test_out_that_cannot_be_created_is_a_usage_error(tmp_path):
    # /proc refuses new directories even to root (chmod-based read-only checks do not bind root).
    path = _recipe(tmp_path)
    result = run_cli("train", str(path), "--device", "cpu", "--out", "/proc/cidpipe-out", cwd=tmp_path)
    assert_clean_failure(result, 2, "/proc/cidpipe-out")


@pytest.mark.parametrize(
    "override, needle",
    [
        ("student.train.momentum=-0.9", "momentum"),
        ("teacher.train.gamma=0", "gamma"),
        ("teacher.train.epochs=0", "epochs"),
        ("data.batch_size=0", "batch_size"),
    ],
)
def test_impossible_optimiser_values_are_refused(tmp_path, override, needle):
    _fails_cleanly(tmp_path, ["run", str(_recipe(tmp_path)), "--dry-run", "--set", override], 2, needle)


@pytest.mark.parametrize(
    "override, code, needle",
    [
        ("distill.method=cidd", 2, "did you mean 'cid'"),
        ("data.name=digitz", 2, "did you mean 'digits'"),
        ("export.targets=[onnx, tflite]", 2, "unknown export target 'tflite'"),
        ("bench.backends=[torch, openvino]", 2, "unknown bench backend 'openvino'"),
        ("student.model.arch=resnet8x5", 4, "did you mean 'resnet8x4'"),
        ("teacher.model.arch=nosuchnet", 4, "teacher.model.arch"),
        # a user's ImageNet network named as torchvision/timm call it: not "did you mean 'resnet8'"
        ("teacher.model.arch=resnet18", 4, "write 'torchvision:resnet18' or 'timm:resnet18'"),
        ("student.model.arch=mobilenetv3_small_100", 4, "write 'timm:mobilenetv3_small_100'"),
    ],
)
def test_unknown_names_fail_at_plan_time(tmp_path, override, code, needle):
    """A typo in distill.method used to surface only after the teacher had trained."""
    _fails_cleanly(tmp_path, ["run", str(_recipe(tmp_path)), "--dry-run", "--set", override], code, needle)


def test_unknown_method_fails_before_the_teacher_trains(tmp_path):
    path = _recipe(tmp_path, distill={"method": "cidd"})
    _fails_cleanly(tmp_path, ["run", str(path), "--device", "cpu"], 2, "distill.method")
    assert not (tmp_path / "runs" / "tiny" / "teacher").exists()


def test_cid_warmup_must_leave_epochs_after_it(tmp_path):
    path = _recipe(tmp_path, distill={"method": "cid", "cid": {"warmup_epochs": 4}})
    _fails_cleanly(tmp_path, ["run", str(path), "--dry-run"], 2, "warmup_epochs (4) must be below")


@pytest.mark.parametrize("role", ["teacher", "student"])
def test_a_missing_weights_file_fails_at_plan_time(tmp_path, role):
    """student.model.checkpoint used to be silently ignored."""
    override = f"{role}.model.checkpoint={tmp_path / 'nope.safetensors'}"  # the older spelling of weights
    _fails_cleanly(tmp_path, ["run", str(_recipe(tmp_path)), "--dry-run", "--set", override], 4,
                   f"{role}.model.weights")  # fmt: skip


def test_a_missing_data_root_fails_at_plan_time(tmp_path):
    path = _recipe(tmp_path, data={"name": "imagefolder", "root": str(tmp_path / "no-such-folder")})
    _fails_cleanly(tmp_path, ["run", str(path), "--dry-run"], 3, "no-such-folder")


def test_a_bench_device_missing_from_the_inventory_fails_at_plan_time(tmp_path):
    path = _recipe(tmp_path, bench={"enabled": True, "devices": ["local", "orin"]})
    _fails_cleanly(tmp_path, ["run", str(path), "--dry-run"], 2, "orin")


def test_trt_int8_without_int8_quantization_fails_at_plan_time(tmp_path):
    path = _recipe(
        tmp_path,
        export={"enabled": True, "targets": ["onnx", "trt"], "trt": {"precision": "int8"}},
        quantize={"enabled": False},
    )
    _fails_cleanly(tmp_path, ["run", str(path), "--dry-run"], 2, "quantize.mode: int8")


def test_the_published_schema_carries_the_registry_names():
    from cidpipe.config import recipe_json_schema
    from cidpipe.recipe_names import dataset_names, method_names, model_names

    defs = recipe_json_schema()["$defs"]
    assert defs["DistillConfig"]["properties"]["method"]["enum"] == method_names()
    assert defs["DataConfig"]["properties"]["name"]["enum"] == dataset_names()
    assert set(model_names()) <= set(defs["ModelConfig"]["properties"]["arch"]["anyOf"][0]["enum"])
    assert "onnx" in defs["ExportConfig"]["properties"]["targets"]["items"]["enum"]

"""Bad input through the real CLI: one line on stderr, the documented exit code, no traceback, no debris."""

from __future__ import annotations

import json
import math

import pytest
import torch
import yaml
from safetensors.torch import save_file

from cidpipe.models import build_model
from tests.conftest import run_cli, tiny_recipe_dict


def _recipe(tmp_path, **sections):
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(tiny_recipe_dict(tmp_path / "runs", **sections)))
    return path


def _assert_clean_failure(result, code: int, needle: str, tmp_path):
    assert result.returncode == code, (result.returncode, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("error: "), result.stderr
    assert needle in lines[-1], lines[-1]
    assert "Traceback" not in result.stderr
    runs = tmp_path / "runs"
    assert not runs.exists() or not any(runs.rglob("manifest.json")), "nothing may be published"
    assert not runs.exists() or not [
        p for p in runs.rglob("*") if p.is_file() and "checkpoints" not in p.parts
    ]


def _weights(tmp_path, arch, name, poison=False):
    model = build_model(arch, 10)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    if poison:
        state = {k: torch.full_like(v, math.nan) if v.is_floating_point() else v for k, v in state.items()}
    path = tmp_path / name
    save_file(state, str(path))
    return path


@pytest.mark.parametrize(
    "sections, code, needle",
    [
        ({"dat": {"name": "digits"}}, 2, "unknown key 'dat' (did you mean 'data'?)"),
        ({"data": {"batch_size": "lots"}}, 2, "'data.batch_size'"),
        ({"teacher": {"model": {"arch": "resnet8x5"}}}, 4, "did you mean 'resnet8x4'"),
        ({"distill": {"method": "cidd"}}, 2, "did you mean 'cid'"),
    ],
)
def test_bad_recipes(tmp_path, sections, code, needle):
    verb = "distill" if "distill" in sections else "train"
    if verb == "distill":
        assert run_cli("train", str(_recipe(tmp_path)), "--device", "cpu").returncode == 0
        before = sorted(p.name for p in (tmp_path / "runs" / "tiny").iterdir())
        result = run_cli("distill", str(_recipe(tmp_path, **sections)), "--device", "cpu")
        assert result.returncode == code and needle in result.stderr and "Traceback" not in result.stderr
        assert sorted(p.name for p in (tmp_path / "runs" / "tiny").iterdir()) == before
        return
    _assert_clean_failure(
        run_cli(verb, str(_recipe(tmp_path, **sections)), "--device", "cpu"), code, needle, tmp_path
    )


def test_set_on_a_key_that_does_not_exist(tmp_path):
    result = run_cli("train", str(_recipe(tmp_path)), "--set", "teacher.train.epoks=3")
    _assert_clean_failure(result, 2, "did you mean 'teacher.train.epochs'", tmp_path)


def test_a_bad_set_value_is_blamed_on_the_flag_not_the_recipe_file(tmp_path):
    recipe = _recipe(tmp_path)
    result = run_cli("train", str(recipe), "--set", "teacher.train.epochs=abc")
    _assert_clean_failure(result, 2, f"--set teacher.train.epochs=abc (on {recipe}): 'teacher.train.epochs'",
                          tmp_path)  # fmt: skip
    bad_file = _recipe(tmp_path, data={"batch_size": "lots"})  # in the file: the file is named first
    assert run_cli("train", str(bad_file)).stderr.startswith(f"error: {bad_file}: 'data.batch_size'")


def test_cuda_graphs_asked_for_on_the_cpu(tmp_path):
    graphs = ["--set", "teacher.train.compile=true", "--set", "teacher.train.compile_mode=reduce-overhead"]
    result = run_cli("train", str(_recipe(tmp_path)), "--device", "cpu", *graphs)
    _assert_clean_failure(result, 2, "needs a CUDA device", tmp_path)
    assert not list((tmp_path / "runs").rglob(".*partial*")), "refused before the stage opened its work dir"


def test_missing_data_directory(tmp_path):
    recipe = _recipe(tmp_path, data={"name": "fashion-mnist", "root": str(tmp_path / "nowhere")})
    _assert_clean_failure(run_cli("train", str(recipe), "--device", "cpu"), 3, "nowhere", tmp_path)


def test_relative_paths_that_do_not_exist_say_where_they_were_looked_for(tmp_path):
    """Relative paths start at the current directory, not at the recipe: the message shows the full path."""
    recipe = _recipe(tmp_path, data={"name": "imagefolder", "root": "images"})
    result = run_cli("train", str(recipe), "--device", "cpu", cwd=tmp_path)
    _assert_clean_failure(result, 3, f"looked for {tmp_path / 'images'}", tmp_path)
    recipe = _recipe(tmp_path, teacher={"model": {"arch": "tinycnn", "weights": "teacher.pth"}})
    result = run_cli("train", str(recipe), "--device", "cpu", cwd=tmp_path)
    _assert_clean_failure(result, 4, f"looked for {tmp_path / 'teacher.pth'}", tmp_path)


def test_directory_without_class_folders(tmp_path):
    empty = tmp_path / "images"
    (empty / "train").mkdir(parents=True)
    (empty / "test").mkdir()
    recipe = _recipe(tmp_path, data={"name": "imagefolder", "root": str(empty)})
    _assert_clean_failure(run_cli("train", str(recipe), "--device", "cpu"), 3, "class", tmp_path)


def test_corrupt_checkpoint(tmp_path):
    bad = tmp_path / "teacher.safetensors"
    bad.write_bytes(b"definitely not a safetensors file")
    recipe = _recipe(tmp_path, teacher={"model": {"arch": "tinycnn", "checkpoint": str(bad)}})
    _assert_clean_failure(run_cli("train", str(recipe), "--device", "cpu"), 4, "corrupt", tmp_path)


def test_checkpoint_of_another_architecture(tmp_path):
    other = _weights(tmp_path, "resnet8", "resnet8.safetensors")
    recipe = _recipe(tmp_path, teacher={"model": {"arch": "tinycnn", "checkpoint": str(other)}})
    _assert_clean_failure(
        run_cli("train", str(recipe), "--device", "cpu"), 4, "does not match a tinycnn", tmp_path
    )


def test_a_first_stage_that_fails_in_its_first_epoch_leaves_no_run_directory(tmp_path):
    """Nothing published and nothing to resume (diverged before its first checkpoint): the run directory
    the stage's work directory was made in goes too, as Ctrl-C in the first epoch left it empty."""
    recipe = _recipe(tmp_path, teacher={"train": {"lr": 1e12}})
    result = run_cli("train", str(recipe), "--device", "cpu")
    assert result.returncode == 5, result.stderr
    assert (tmp_path / "runs").is_dir() and not (tmp_path / "runs" / "tiny").exists()


def test_weights_that_produce_nan_stop_distillation(tmp_path):
    poisoned = _weights(tmp_path, "tinycnn", "nan.safetensors", poison=True)
    recipe = _recipe(tmp_path, teacher={"model": {"arch": "tinycnn", "checkpoint": str(poisoned)}})
    assert run_cli("train", str(recipe), "--device", "cpu").returncode == 0  # importing weights is fine
    result = run_cli("distill", str(recipe), "--device", "cpu")
    assert result.returncode == 5, result.stderr
    assert "NaN/inf" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "runs" / "tiny" / "student").exists()


def test_gate_and_report_on_a_directory_that_is_not_a_run(tmp_path):
    for verb in ("gate", "report", "eval"):
        result = run_cli(verb, str(tmp_path))
        assert result.returncode == 2, (verb, result.stderr)
        assert result.stderr.startswith("error: ") and "Traceback" not in result.stderr


def test_debug_env_shows_the_traceback(tmp_path):
    result = run_cli("train", str(_recipe(tmp_path, dat={})), env={"CIDPIPE_DEBUG": "1"})
    assert result.returncode != 0 and "Traceback" in result.stderr


def test_threads_option_sets_torch_threads_and_refuses_zero(tmp_path):
    from cidpipe.cli.main import exit_status

    before = torch.get_num_threads()
    try:
        assert exit_status(["--threads", "3", "models"]) == 0
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)
    result = run_cli("--threads", "0", "models")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: Invalid value for '--threads'")
    from_env = run_cli("models", env={"CIDPIPE_THREADS": "zero"})
    assert from_env.returncode == 2 and "CIDPIPE_THREADS" in from_env.stderr


@pytest.mark.parametrize(
    "sections, code, needle",
    [
        ({"teacher": {"model": {"arch": "tinycnn"}, "input": {"mean": [0.5, 0.5]}}}, 2,
         "teacher.input.mean has 2 values but digits images have 3 channel(s); give 3"),
        ({"data": {"std": [0.2]}}, 2, "data.std has 1 values but digits images have 3 channel(s)"),
        ({"teacher": {"model": {"arch": "tinycnn", "weights": "a_directory"}}}, 4,
         "teacher.model.weights a_directory is a directory, not a file"),
        ({"teacher": {"model": {"arch": "tinycnn", "weights": "corrupt.safetensors"}}}, 4,
         "corrupt.safetensors is corrupt or not a safetensors file"),
        ({"student": {"model": {"arch": "tinycnn", "weights": "whole_model.pt"}}}, 4,
         "holds a pickled Python object"),
        ({"teacher": {"model": {"arch": "tinycnn", "weights": "notes.pt"}}}, 4,
         "notes.pt is not a torch or safetensors weights file (corrupt, truncated or another format)"),
        ({"teacher": {"model": {"arch": "tinycnn", "weights": "half.pt"}}}, 4,
         "half.pt is not a torch or safetensors weights file"),
        ({"teacher": {"model": {"arch": "tinycnn", "weights": "resnet8.safetensors"}}}, 4,
         "resnet8.safetensors does not match a tinycnn model: "),
        ({"student": {"model": {"arch": "resnet8", "weights": "resnet8x4.pt"}}}, 4,
         "resnet8x4.pt does not match a resnet8 model: 0 expected keys missing and 6 unexpected; first "
         "unexpected 'stages.0.0.shortcut.0.weight', 45 of another shape, first 'stem.0.0.weight' "
         "(32, 3, 3, 3) where (16, 3, 3, 3) is expected"),
    ],
)
def test_dry_run_finds_what_the_stage_would_refuse(tmp_path, sections, code, needle):
    """Found by the plan, before any data is read, and named by the recipe key the user wrote."""
    (tmp_path / "a_directory").mkdir()
    (tmp_path / "corrupt.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00not json")
    torch.save(torch.nn.Linear(2, 2), tmp_path / "whole_model.pt")
    (tmp_path / "notes.pt").write_text("the weights are on the shared drive\n")
    torch.save(build_model("tinycnn", 10).state_dict(), tmp_path / "full.pt")
    (tmp_path / "half.pt").write_bytes((tmp_path / "full.pt").read_bytes()[:5000])  # a cut-off download
    _weights(tmp_path, "resnet8", "resnet8.safetensors")
    torch.save(build_model("resnet8x4", 10).state_dict(), tmp_path / "resnet8x4.pt")
    result = run_cli("run", str(_recipe(tmp_path, **sections)), "--dry-run", cwd=tmp_path)
    _assert_clean_failure(result, code, needle, tmp_path)


def test_dry_run_accepts_weights_of_another_class_count_and_says_the_head_is_reset(tmp_path):
    """A checkpoint with another head only resets it, which the plan says (the data's class count is known
    without reading it): an imported teacher that will be retrained is not a bare "not run yet"."""
    for classes in (100, 10):
        state = {k: v.contiguous() for k, v in build_model("resnet8", classes).state_dict().items()}
        save_file(state, str(tmp_path / f"c{classes}.safetensors"))
    teacher = {"model": {"arch": "resnet8", "weights": "c100.safetensors"}, "train": {"epochs": 3}}
    result = run_cli("run", str(_recipe(tmp_path, teacher=teacher)), "--dry-run", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    plan = {step["name"]: step["reason"] for step in json.loads(result.stdout)["result"]["plan"]}
    assert plan["teacher"] == ("not run yet; c100.safetensors has a 100-class classifier and the data 10 "
                               "classes: the head is re-initialised and the teacher trained for 3 epochs "
                               "(teacher.train.epochs)")
    teacher["model"]["weights"] = "c10.safetensors"  # the data's class count: imported as it is
    result = run_cli("run", str(_recipe(tmp_path, teacher=teacher)), "--dry-run", "--json", cwd=tmp_path)
    assert json.loads(result.stdout)["result"]["plan"][0]["reason"] == "not run yet"


def test_a_stage_directory_the_run_does_not_have_yet_names_the_verb_that_makes_it(tmp_path):
    run_dir = tmp_path / "made" / "tiny"  # a run with its recipe and no stage (tmp_path/runs stays empty)
    run_dir.mkdir(parents=True)
    (run_dir / "recipe.yaml").write_text(yaml.safe_dump(tiny_recipe_dict(tmp_path / "made")))
    result = run_cli("export", str(run_dir / "student"))
    _assert_clean_failure(result, 2, f"the run {run_dir} has no finished student stage; make it with "
                          f"`cidpipe distill {run_dir}`", tmp_path)  # fmt: skip
    result = run_cli("bench", str(run_dir / "trt"))
    _assert_clean_failure(result, 2, f"`cidpipe export {run_dir} --target trt`", tmp_path)


def test_a_folder_that_only_keeps_a_recipe_is_not_taken_for_a_run(tmp_path):
    """A user's project folder with its recipe.yaml (named for another run) passed where a run goes."""
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "recipe.yaml").write_text(yaml.safe_dump(tiny_recipe_dict(tmp_path / "runs")))
    for verb in ("quantize", "bench"):
        result = run_cli(verb, str(folder))
        why = f"{folder} is not a cidpipe run directory: it holds a recipe (recipe.yaml, run 'tiny')"
        _assert_clean_failure(result, 2, why + " but no stage; pass the recipe file", tmp_path)


def test_a_missing_run_path_is_named_as_a_path_not_as_a_recipe_name(tmp_path):
    missing = tmp_path / "runs" / "nothere"
    result = run_cli("quantize", str(missing))
    _assert_clean_failure(result, 2, f"{missing} does not exist (looked for {missing}); pass a recipe file, "
                          "a bundled recipe name or a run directory", tmp_path)  # fmt: skip
    typo = run_cli("bench", "quickstrt")
    assert typo.returncode == 2 and "(did you mean 'quickstart'?)" in typo.stderr


def test_dry_run_finds_pretrained_weights_that_cannot_be_had(tmp_path):
    recipe = _recipe(tmp_path, teacher={"model": {"arch": "timm:resnet10t", "pretrained": True}})
    empty = tmp_path / "cache"
    env = {"CIDPIPE_OFFLINE": "1", "HF_HOME": str(empty), "TORCH_HOME": str(empty)}
    result = run_cli("run", str(recipe), "--dry-run", env=env)
    needle = "pretrained weights for timm:resnet10t are not in the local cache"
    _assert_clean_failure(result, 4, needle, tmp_path)


@pytest.mark.parametrize("args, flag", [
    (["quantize", "quickstart", "--mode", "int4"], "--mode int4"),
    (["bench", "quickstart", "--runs", "0"], "--runs 0"),
])
def test_a_bad_option_value_is_blamed_on_the_option_typed(tmp_path, args, flag):
    """The verbs turn their options into recipe overrides; the error names the option, not a --set."""
    result = run_cli(*args, cwd=tmp_path)
    _assert_clean_failure(result, 2, f"error: {flag} (on ", tmp_path)
    assert "--set" not in result.stderr

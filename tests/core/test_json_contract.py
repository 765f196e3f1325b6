"""Every verb's ``--json``: exactly one ``{schema, verb, ok, result, error}`` object, on success and failure.

The table of cases is checked against the commands the CLI registers, so a new verb without a JSON case
fails here. Success cases share one finished tiny run (tests/core/conftest.py; cached stages answer in a
second or two).
"""

from __future__ import annotations

import json

import pytest
import typer
import yaml

from cidpipe.cli.main import _register_verbs, app
from tests.conftest import json_reply, run_cli


def registered_verbs() -> set[str]:
    _register_verbs()
    root = typer.main.get_command(app)
    verbs = set()
    for name, command in root.commands.items():
        if getattr(command, "commands", None):  # a group: devices, recipes
            verbs |= {f"{name} {sub}" for sub in command.commands}
        else:
            verbs.add(name)
    return verbs


def success_cases(root, recipe, run_dir) -> dict[str, list[str]]:
    return {
        "run": ["run", str(recipe), "--device", "cpu"],
        "train": ["train", str(recipe), "--device", "cpu"],
        "distill": ["distill", str(recipe), "--device", "cpu"],
        "quantize": ["quantize", str(run_dir)],
        "export": ["export", str(run_dir)],
        "bench": ["bench", str(run_dir)],
        "devices list": ["devices", "list"],
        "devices check": ["devices", "check", "local"],
        "gate": ["gate", str(run_dir)],
        "report": ["report", str(run_dir), "--out", str(root / "report")],
        "eval": ["eval", str(run_dir)],
        "predict": ["predict", str(run_dir / "export" / "model.onnx"), str(root / "digit.png")],
        "compare": ["compare", str(recipe), "--methods", "kd", "--seeds", "0", "--device", "cpu",
                    "--set", "student.train.epochs=2"],
        "recipes list": ["recipes", "list"],
        "recipes show": ["recipes", "show", "quickstart"],
        "recipes schema": ["recipes", "schema"],
        "models": ["models"],
    }  # fmt: skip


def failure_cases(root) -> dict[str, tuple[list[str], int]]:
    missing = str(root / "no-such-recipe.yaml")
    return {
        "run": (["run", missing], 2),
        "train": (["train", missing], 2),
        "distill": (["distill", missing], 2),
        "quantize": (["quantize", missing], 2),
        "export": (["export", missing], 2),
        "bench": (["bench", missing], 2),
        "devices list": (["devices", "list", "--inventory", missing], 2),
        "devices check": (["devices", "check", "no-such-board"], 2),
        "gate": (["gate", str(root / "no-such-run")], 2),
        "report": (["report", str(root / "no-such-run")], 2),
        "eval": (["eval", missing], 2),
        "predict": (["predict", str(root / "no-such.onnx"), str(root / "no-such.png")], 2),
        "compare": (["compare", missing], 2),
        "recipes list": (["recipes", "list", "--no-such-option"], 2),
        "recipes show": (["recipes", "show", "no-such-recipe"], 2),
        "recipes schema": (["recipes", "schema", "--no-such-option"], 2),
        "models": (["models", "--no-such-option"], 2),
    }


def test_every_registered_verb_has_a_success_and_a_failure_case(tmp_path):
    verbs = registered_verbs()
    assert set(success_cases(tmp_path, tmp_path, tmp_path)) == verbs
    assert set(failure_cases(tmp_path)) == verbs


def test_every_verb_succeeds_with_one_json_object(json_run):
    root, recipe, run_dir, _ = json_run
    for verb, args in success_cases(root, recipe, run_dir).items():
        proc = run_cli(*args, "--json", timeout=300)
        assert proc.returncode == 0, (verb, proc.stderr[-2000:])
        result = json_reply(proc)
        assert json.loads(proc.stdout)["verb"] == verb
        assert result is not None, verb


def test_every_verb_fails_with_one_json_object(tmp_path):
    for verb, (args, code) in failure_cases(tmp_path).items():
        proc = run_cli(*args, "--json")
        assert proc.returncode == code, (verb, proc.stdout, proc.stderr)
        json_reply(proc, ok=False)
        assert json.loads(proc.stdout)["verb"] == verb, proc.stdout
        assert proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr


@pytest.mark.parametrize("before", [["--threads", "1"], ["--threads=1"]])
def test_the_verb_is_named_after_a_global_option(tmp_path, before):
    """README recommends ``cidpipe --threads 1 VERB``: the reply still names VERB, on failure and success."""
    proc = run_cli(*before, "gate", str(tmp_path / "no-such-run"), "--json")
    assert proc.returncode == 2 and json.loads(proc.stdout)["verb"] == "gate"
    proc = run_cli(*before, "recipes", "show", "quickstart", "--json")
    assert proc.returncode == 0 and json.loads(proc.stdout)["verb"] == "recipes show"


def test_run_json_carries_the_gate_verdict_and_the_headline(json_run):
    _, _, _, result = json_run
    assert result["gate"]["passed"] is True
    assert {"plan", "run_dir", "gate", "headline"} <= set(result)
    torch_row = next(row for row in result["headline"] if row["artifact"] == "torch")
    assert torch_row["teacher_artifact"] == "torch" and torch_row["speedup_p50"] > 0


def test_a_failing_gate_reply_carries_its_verdict(json_run, tmp_path):
    _, _, run_dir, _ = json_run
    strict = tmp_path / "gate.yaml"
    strict.write_text(yaml.safe_dump({"min_top1": 100.0}))
    proc = run_cli("gate", str(run_dir), "--gate", str(strict), "--json")
    assert proc.returncode == 1
    verdict = json_reply(proc, ok=False)
    assert verdict["passed"] is False and any(not check["passed"] for check in verdict["checks"])


def test_schema_without_json_is_the_plain_schema_document():
    proc = run_cli("recipes", "schema")
    assert proc.returncode == 0
    assert json.loads(proc.stdout)["title"] == "Recipe"

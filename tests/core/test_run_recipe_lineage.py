"""runs/<name>/recipe.yaml describes the stages the run holds: verbs pointed at the run directory
(`cidpipe quantize RUN`, `gate RUN`) read it. A changed recipe that fails before publishing anything must
not replace it (it did: the teacher was cached, the new student refused, and the next `quantize RUN` rebuilt
the quantize stage from the failed recipe's settings)."""

from __future__ import annotations

import yaml

from tests.conftest import run_cli, tiny_recipe_dict


def test_a_failed_changed_run_keeps_the_recipe_of_the_published_stages(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe_dict(tmp_path / "runs")))
    first = run_cli("run", str(recipe), "--device", "cpu")
    assert first.returncode == 0, first.stderr[-2000:]
    run_dir = tmp_path / "runs" / "tiny"
    published = (run_dir / "recipe.yaml").read_text()

    wrong_weights = run_dir / "teacher" / "model.safetensors"  # a tinycnn's weights for a resnet8 student
    failed = run_cli("run", str(recipe), "--device", "cpu", "--set", "student.model.arch=resnet8",
                     "--set", f"student.model.weights={wrong_weights}")
    assert failed.returncode == 4, failed.stderr[-2000:]
    assert (run_dir / "recipe.yaml").read_text() == published

    changed = run_cli("run", str(recipe), "--device", "cpu", "--set", "student.train.epochs=3")
    assert changed.returncode == 0, changed.stderr[-2000:]
    now = yaml.safe_load((run_dir / "recipe.yaml").read_text())
    assert now["student"]["train"]["epochs"] == 3  # a run that published its student records its recipe


def test_a_single_stage_verbs_set_values_last_one_call_and_the_report_names_its_stage(tmp_path):
    """`quantize RUN --samples 32` makes the quantize stage with its overrides but leaves recipe.yaml as it
    was: a flag such as `bench --tolerate-device-failures` must not become the run's setting for the next
    CI call. The report, which shows recipe.yaml, says which stage was made otherwise (it showed the older
    recipe next to the new stage's id without a word)."""
    recipe = tmp_path / "recipe.yaml"
    quantize = {"enabled": True, "calibration": {"samples": 64}}
    recipe.write_text(yaml.safe_dump(tiny_recipe_dict(tmp_path / "runs", export={"enabled": True},
                                                      quantize=quantize)))
    first = run_cli("run", str(recipe), "--device", "cpu")
    assert first.returncode == 0, first.stderr[-2000:]
    run_dir = tmp_path / "runs" / "tiny"
    written = (run_dir / "recipe.yaml").read_text()

    def report() -> str:
        done = run_cli("report", str(run_dir), "--out", str(tmp_path / "report"))
        assert done.returncode == 0, done.stderr[-2000:]
        return " ".join((tmp_path / "report" / "report.md").read_text().split())

    assert "Made with other settings" not in report()
    requantized = run_cli("quantize", str(run_dir), "--samples", "32")
    assert requantized.returncode == 0, requantized.stderr[-2000:]
    assert (run_dir / "recipe.yaml").read_text() == written
    assert "Made with other settings than this recipe.yaml gives them (a verb's --set values, or an edited " \
           "recipe): quantize;" in report()

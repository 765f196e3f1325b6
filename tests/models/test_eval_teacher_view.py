"""`cidpipe eval` of the teacher, its stage or its exported ONNX, sees the teacher's own input size and
statistics (teacher.input), as the teacher stage and the bench do: it fed a 224-px teacher the student's
96-px images and reported below-chance numbers with exit 0, and refused export/teacher.onnx.

Real parts: a real `cidpipe run` on digits (teacher at 24 px, student at 16 px), the CLI as a subprocess.
"""

from __future__ import annotations

import json

import pytest
import yaml

from tests.conftest import run_cli, tiny_recipe_dict


@pytest.fixture(scope="module")
def run_with_a_bigger_teacher(tmp_path_factory):
    root = tmp_path_factory.mktemp("teacher-view")
    two = {"epochs": 2, "lr": 0.1, "schedule": "cosine"}
    recipe = tiny_recipe_dict(
        root / "runs",
        teacher={"train": two, "input": {"input_size": 24, "mean": [0.4] * 3, "std": [0.3] * 3}},
        student={"train": two},
        export={"enabled": True, "teacher": True},
    )
    path = root / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    proc = run_cli("run", str(path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root / "runs" / "tiny"


def eval_json(*args):
    proc = run_cli("eval", *args, "--json")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return json.loads(proc.stdout)["result"]


def test_the_teacher_stage_is_evaluated_at_its_own_input(run_with_a_bigger_teacher):
    run = run_with_a_bigger_teacher
    metrics = json.loads((run / "teacher" / "manifest.json").read_text())["metrics"]
    result = eval_json(str(run / "teacher"))
    assert result["test_top1"] == pytest.approx(metrics["test_top1"], abs=1e-6)
    assert result["val_top1"] == pytest.approx(metrics["val_top1"], abs=1e-6)


def test_the_exported_teacher_is_accepted_and_scores_like_its_stage(run_with_a_bigger_teacher):
    run = run_with_a_bigger_teacher
    metrics = json.loads((run / "teacher" / "manifest.json").read_text())["metrics"]
    result = eval_json(str(run), "--artifact", str(run / "export" / "teacher.onnx"))
    assert result["test_top1"] == pytest.approx(metrics["test_top1"], abs=0.5)  # ONNX vs torch: parity
    student = eval_json(str(run / "export" / "model.onnx"))  # the student's artifact keeps the student's view
    student_metrics = json.loads((run / "student" / "manifest.json").read_text())["metrics"]
    assert student["test_top1"] == pytest.approx(student_metrics["test_top1"], abs=0.5)


def test_the_table_names_model_and_data_on_one_unbroken_line(run_with_a_bigger_teacher):
    """The title used to sit inside the two-column table, which wrapped a long model name mid-word."""
    proc = run_cli("eval", str(run_with_a_bigger_teacher / "teacher"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    title = proc.stdout.splitlines()[0]
    assert title.startswith("eval: ") and "tinycnn" in title and " on digits" in title, proc.stdout

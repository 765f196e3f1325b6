"""Ctrl-C during real work: exit 130 and the line that says how to resume, never a silent exit 0.

Each case starts the real ``cidpipe`` entry point, waits until it is demonstrably working (an epoch progress
line on stderr, or the stage's work directory on disk), sends SIGINT as a terminal would, and checks what a
shell or CI runner sees. Export and quantize of the tiny test model finish in well under a second, too fast
to be interrupted reliably in the middle; bench is interrupted while it measures.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from cidpipe.errors import INTERRUPTED_EXIT, interrupted_message
from tests.conftest import run_cli
from tests.trust.hostile import cidpipe_env, one_epoch_kd_export, write_recipe

LONG = {"epochs": 300, "lr": 0.05, "schedule": "cosine"}  # far longer than any test waits


def _default_sigint() -> None:
    # A child of a non-interactive shell or CI runner may inherit SIGINT as ignored; a user's Ctrl-C is not.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def interrupt_when(
    args: list[str], ready: Callable[[list[str]], bool], *, timeout: float = 150
) -> tuple[int, str]:
    """Run ``cidpipe ARGS``, send SIGINT once ``ready(stderr lines so far)`` holds; (exit status, stderr)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "cidpipe", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=cidpipe_env(),
        preexec_fn=_default_sigint,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(process.stderr.readline, "")), daemon=True)
    reader.start()
    deadline = time.monotonic() + timeout
    try:
        while not ready(lines):
            if process.poll() is not None:
                pytest.fail(
                    f"cidpipe ended ({process.returncode}) before it could be interrupted: {lines[-20:]}"
                )
            if time.monotonic() > deadline:
                pytest.fail(f"cidpipe did not start working within {timeout:.0f}s: {lines[-20:]}")
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        status = process.wait(timeout=90)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    reader.join(timeout=10)
    return status, "".join(lines)


def assert_interrupted(status: int, stderr: str, verb: str) -> None:
    assert status == INTERRUPTED_EXIT, f"exit {status}, wanted {INTERRUPTED_EXIT}\n{stderr[-3000:]}"
    assert "Traceback" not in stderr, stderr[-3000:]
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert lines and lines[-1] == interrupted_message(verb), stderr[-3000:]
    assert lines[-1].startswith("interrupted; nothing half-written was published; rerun the same command")
    # Only a verb that trains says that training resumes (bench, export, ... start their stage over).
    assert ("training resumes" in lines[-1]) == (verb in ("train", "distill", "run")), lines[-1]


def epoch_line(text: str) -> Callable[[list[str]], bool]:
    return lambda lines: any(text in line for line in lines)


def _checkpoints(runs: Path, stage: str) -> list[Path]:
    found = runs.glob(f"*/.{stage}.partial-*/checkpoints/*")
    return [p for p in found if p.is_file() and not p.name.startswith(".")]  # not a temp mid-write


def _checkpoint_written(runs: Path, stage: str) -> Callable[[list[str]], bool]:
    # The epoch line can be printed before the checkpoint is on disk; wait for the file itself.
    return lambda lines: bool(_checkpoints(runs, stage))


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory) -> Path:
    """A recipe whose one-epoch teacher is trained; its student is long enough to be interrupted."""
    root = tmp_path_factory.mktemp("teacher")
    recipe = write_recipe(root, **one_epoch_kd_export(student={"train": LONG}))
    done = run_cli("train", str(recipe), "--device", "cpu", timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return recipe


@pytest.mark.slow
def test_interrupted_train(tmp_path):
    recipe = write_recipe(tmp_path, teacher={"train": LONG})
    status, stderr = interrupt_when(
        ["train", str(recipe), "--device", "cpu"], _checkpoint_written(tmp_path / "runs", "teacher")
    )
    assert_interrupted(status, stderr, "train")
    assert _checkpoints(tmp_path / "runs", "teacher"), "the promised resume needs the epoch checkpoint"
    assert not (tmp_path / "runs" / "tiny" / "teacher").exists(), "nothing half-trained is published"


@pytest.mark.slow
def test_interrupted_distill(teacher_run):
    status, stderr = interrupt_when(
        ["distill", str(teacher_run), "--device", "cpu"],
        _checkpoint_written(teacher_run.parent / "runs", "student"),
    )
    assert_interrupted(status, stderr, "distill")
    runs = teacher_run.parent / "runs"
    assert _checkpoints(runs, "student")
    assert not (runs / "tiny" / "student").exists()
    plan = run_cli("run", str(teacher_run), "--dry-run", "--json")  # the plan says the rerun resumes
    student = next(step for step in json.loads(plan.stdout)["result"]["plan"] if step["name"] == "student")
    assert student["action"] == "run"
    assert student["reason"] == "not run yet; resumes from the epoch checkpoint an interrupted run kept"


@pytest.mark.slow
def test_interrupted_run_during_the_student(tmp_path):
    recipe = write_recipe(
        tmp_path, teacher={"train": {"epochs": 1}}, student={"train": LONG}, distill={"method": "kd"}
    )
    status, stderr = interrupt_when(["run", str(recipe), "--device", "cpu"], epoch_line("epoch 1/300"))
    assert_interrupted(status, stderr, "run")
    assert (tmp_path / "runs" / "tiny" / "teacher" / "manifest.json").is_file(), "finished stages stay"
    assert not (tmp_path / "runs" / "tiny" / "student").exists()


@pytest.mark.slow
def test_interrupted_bench_while_it_measures(teacher_run):
    runs = teacher_run.parent / "runs"
    # A short student, distilled and exported once, so that there is something to bench.
    built = run_cli(
        "run", str(teacher_run), "--device", "cpu", "--set", "student.train.epochs=1", timeout=180
    )
    assert built.returncode == 0, built.stderr[-3000:]
    run_dir = runs / "tiny"

    def measuring(_lines: list[str]) -> bool:
        return any(run_dir.glob(".bench.partial-*"))

    status, stderr = interrupt_when(
        ["bench", str(run_dir), "--set", "bench.min_seconds=600", "--set", "bench.runs=1000000"], measuring
    )
    assert_interrupted(status, stderr, "bench")
    assert not (run_dir / "bench").exists()
    assert not list(run_dir.glob(".bench.partial-*")), "an interrupted bench leaves no half-written stage"


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_interrupted_nproc_launch_stops_its_ranks(tmp_path):
    """SIGINT to the launching process reaches torchrun and the ranks; the launch still exits 130."""
    recipe = write_recipe(tmp_path, teacher={"train": LONG})
    status, stderr = interrupt_when(
        ["train", str(recipe), "--device", "cpu", "--nproc", "2"], epoch_line("epoch 1/300"), timeout=200
    )
    assert_interrupted(status, stderr, "train")
    assert "ChildFailedError" not in stderr
    leftovers = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert str(recipe) not in leftovers, "no rank may outlive an interrupted launch"

"""Shared fixtures: tiny recipes that train in seconds on digits, and a CLI runner that checks exit codes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from tests.cli_zygote import Zygote

REPO = Path(__file__).resolve().parent.parent
_ZYGOTE = Zygote()


@pytest.fixture(autouse=True, scope="session")
def _few_threads():
    # Tests run on a shared 2-core machine; one intra-op thread keeps timings sane and results repeatable.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def tiny_recipe_dict(out_dir: Path, **sections) -> dict:
    recipe = {
        "name": "tiny",
        "out_dir": str(out_dir),
        # All of digits' 1295 training images at 16x16 with a 30k-parameter CNN: a few seconds per stage,
        # and enough steps that the teacher is well above chance (~75 %) so distillation has signal.
        "data": {"name": "digits", "input_size": 16, "batch_size": 32},
        "teacher": {"model": {"arch": "tinycnn"}, "train": {"epochs": 4, "lr": 0.1, "schedule": "cosine"}},
        "student": {"model": {"arch": "tinycnn"}, "train": {"epochs": 4, "lr": 0.1, "schedule": "cosine"}},
        "distill": {"method": "cid", "cid": {"warmup_epochs": 1}},
        "quantize": {"enabled": False},
        "export": {"enabled": False},
        "bench": {"enabled": False},
        "gate": {"enabled": False},
        "report": {"enabled": False},
    }
    for key, value in sections.items():
        recipe[key] = value if not isinstance(value, dict) else {**recipe.get(key, {}), **value}
    return recipe


@pytest.fixture
def write_recipe(tmp_path):
    def write(**sections) -> Path:
        path = tmp_path / "recipe.yaml"
        path.write_text(yaml.safe_dump(tiny_recipe_dict(tmp_path / "runs", **sections)))
        return path

    return write


def run_cli(
    *args: str, cwd: Path | None = None, env: dict | None = None, timeout: float = 300
) -> subprocess.CompletedProcess:
    """The real `cidpipe` entry point in its own process, so exit codes and stderr are what a user sees.

    The process is forked from a warm interpreter (tests/cli_zygote.py: torch imported once, not once per
    command) unless the command's environment changes how Python imports (PYTHON*), or
    CIDPIPE_TEST_FRESH_PROCESS=1 asks for a fresh interpreter every time."""
    full_env = {k: v for k, v in os.environ.items() if k != "CIDPIPE_DEBUG"}
    full_env.update({"OMP_NUM_THREADS": "1", **(env or {})})
    fresh = (os.environ.get("CIDPIPE_TEST_FRESH_PROCESS") == "1"
             or any(key.startswith("PYTHON") for key in env or {}))
    if not fresh:
        return _ZYGOTE.run(list(args), cwd=cwd, env=full_env, timeout=timeout)
    return subprocess.run(
        [sys.executable, "-m", "cidpipe", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def sigkill_when_file_appears(args: list[str], root: Path, pattern: str, timeout: float = 240) -> Path:
    """Start `cidpipe *args`, SIGKILL it as soon as ``root.glob(pattern)`` finds a file (an epoch
    checkpoint, say) and return that file; fails the test if none appears before the process ends."""
    import signal
    import time

    proc = subprocess.Popen([sys.executable, "-m", "cidpipe", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + timeout
    found: list[Path] = []
    while time.monotonic() < deadline and proc.poll() is None:
        found = list(root.glob(pattern))
        if found:
            break
        time.sleep(0.05)
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert found, f"no {pattern} appeared under {root} before the process ended"
    return found[0]


def json_reply(proc: subprocess.CompletedProcess, *, ok: bool = True) -> object:
    """The ``result`` of a verb's ``--json`` reply, after checking it is the one object of the contract."""
    import json

    reply = json.loads(proc.stdout)
    assert set(reply) == {"schema", "verb", "ok", "result", "error"}, reply
    assert reply["schema"] == 1 and reply["ok"] is ok, reply
    if not ok:
        assert reply["error"]["exit_code"] == proc.returncode and reply["error"]["message"], reply
    return reply["result"]

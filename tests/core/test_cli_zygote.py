"""The forked CLI runner (tests/cli_zygote.py) answers as a fresh `python -m cidpipe` does: same exit code,
stdout and stderr, for a success, a usage error and a failure that depends on the working directory and
the environment; a timeout kills the command and leaves the runner usable."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.cli_zygote import Zygote


def _fresh(args, cwd, env):
    return subprocess.run([sys.executable, "-m", "cidpipe", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.fixture(scope="module")
def zygote():
    runner = Zygote()
    yield runner
    runner.close()


@pytest.mark.parametrize("args", [
    ["recipes", "show", "quickstart", "--json"],
    ["models", "--no-such-option"],
    ["gate", "no-such-run"],  # relative: the message names the directory it looked in
    ["run", "recipe.yaml", "--dry-run"],
])
def test_forked_command_answers_like_a_fresh_interpreter(zygote, tmp_path, args):
    (tmp_path / "recipe.yaml").write_text("name: r\ndata: {name: digitz}\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "97"}
    forked = zygote.run(args, cwd=tmp_path, env=env, timeout=300)
    fresh = _fresh(args, tmp_path, env)
    assert (forked.returncode, forked.stdout, forked.stderr) == (fresh.returncode, fresh.stdout, fresh.stderr)
    assert fresh.returncode != 0 or fresh.stdout  # each case does something visible


def test_a_timeout_kills_the_command_and_the_next_one_runs(zygote, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with pytest.raises(subprocess.TimeoutExpired):
        zygote.run(["recipes", "show", "quickstart"], cwd=tmp_path, env=env, timeout=0.001)
    after = zygote.run(["recipes", "show", "quickstart"], cwd=tmp_path, env=env, timeout=300)
    assert after.returncode == 0 and "name: quickstart" in after.stdout

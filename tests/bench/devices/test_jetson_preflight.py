"""A ``kind: jetson`` device whose board lacks L4T / trtexec / tegrastats is refused before any compute.

The "board" is this machine behind the real loopback sshd: it has no L4T, no TensorRT and no tegrastats,
which is exactly the misdeclared board of the issue. The complete board is the same machine with the
stand-in tools of test_jetson.py plus a stand-in ``dpkg-query`` that reports the L4T core package.
"""

from __future__ import annotations

import os
import textwrap

import pytest
import yaml

from cidpipe.bench.devices import check_device
from cidpipe.bench.devices.probe import require_device_ready
from cidpipe.errors import DeviceError
from tests.bench.devices.test_jetson import FAKE_TOOLS
from tests.conftest import run_cli, tiny_recipe_dict
from tests.trust.hostile import assert_clean_failure

pytestmark = pytest.mark.ssh

FAKE_DPKG = """
    #!/bin/sh
    # stand-in dpkg-query -W -f=${Version} PACKAGE: only the L4T core package is installed
    for last; do :; done
    [ "$last" = "nvidia-l4t-core" ] && printf '35.4.1-20230801124926' && exit 0
    exit 1
    """


def _inventory(tmp_path, device) -> str:
    entry = device.model_dump(mode="json", exclude={"name"}, exclude_none=True)
    path = tmp_path / "devices.yaml"
    path.write_text(yaml.safe_dump({"devices": {device.name: entry}}))
    return str(path)


@pytest.fixture
def bare_board(sshd):
    return sshd.device(name="orin", kind="jetson")


@pytest.fixture
def full_board(sshd, tmp_path):
    fake_bin = tmp_path / "fake-bin"
    fake_bin.mkdir()
    for name, script in {**FAKE_TOOLS, "dpkg-query": FAKE_DPKG}.items():
        (fake_bin / name).write_text(textwrap.dedent(script).lstrip())
        (fake_bin / name).chmod(0o755)
    env = {"PATH": f"{fake_bin}:{os.environ['PATH']}", "FAKE_LOG_DIR": str(tmp_path)}
    return sshd.device(name="orin", kind="jetson", env=env)


def test_devices_check_names_what_the_board_lacks(bare_board, tmp_path):
    result = run_cli("devices", "check", "orin", "--inventory", _inventory(tmp_path, bare_board))
    line = assert_clean_failure(result, 8, "kind: jetson")
    for missing in ("L4T", "trtexec", "tegrastats", "kind: ssh"):
        assert missing in line, line


def test_dry_run_of_a_recipe_that_benches_on_it_fails_before_training(bare_board, tmp_path):
    recipe = tmp_path / "recipe.yaml"
    bench = {"enabled": True, "devices": ["orin"], "inventory": _inventory(tmp_path, bare_board)}
    recipe.write_text(yaml.safe_dump(tiny_recipe_dict(tmp_path / "runs", bench=bench)))
    result = run_cli("run", str(recipe), "--dry-run")
    line = assert_clean_failure(result, 8, "orin")
    assert "trtexec" in line and "tegrastats" in line
    assert not (tmp_path / "runs").exists()


def test_a_complete_board_has_no_problems(full_board):
    report = check_device(full_board)
    assert report["problems"] == [], report["problems"]
    assert report["jetson"]["l4t_core_package"].startswith("35.4.1")
    assert report["jetson"]["trtexec"].endswith("/fake-bin/trtexec")
    require_device_ready(full_board)  # the plan-time check passes too


def test_a_configured_trtexec_that_is_not_there_is_named(full_board):
    board = full_board.model_copy(update={"trtexec": "/opt/nowhere/trtexec"})
    with pytest.raises(DeviceError, match="/opt/nowhere/trtexec") as caught:
        require_device_ready(board)
    assert "\n" not in str(caught.value) and "L4T" not in str(caught.value)


def test_an_unreachable_board_fails_unless_device_failures_are_tolerated(sshd, closed_port):
    board = sshd.device(name="orin", kind="jetson", port=closed_port, connect_timeout_s=2)
    with pytest.raises(DeviceError):
        require_device_ready(board)
    require_device_ready(board, tolerate_unreachable=True)  # left to the bench's failed rows

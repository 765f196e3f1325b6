"""Every way a device can be wrong gives ONE actionable line (DeviceError / UsageError), fast, no debris.

Real failures only: a closed port, a socket that never speaks SSH, a key the server does not know, an
empty known_hosts, a python that does not exist, a python without onnxruntime.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from cidpipe.bench.config import BenchConfig
from cidpipe.bench.devices import SshTarget, check_device, load_inventory, run_remote_bench
from cidpipe.errors import ConfigError, DeviceError, UsageError

pytestmark = pytest.mark.ssh

BENCH = BenchConfig(batch_sizes=[1], warmup_runs=0, warmup_seconds=0.0, runs=1, min_seconds=0.0)
SYSTEM_PYTHON = Path("/usr/bin/python3")


def assert_one_line(error: Exception, *fragments: str) -> None:
    message = str(error)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message


def workdir_entries(sshd, workdir: str) -> list[str]:
    with SshTarget(sshd.device()) as target:
        return target.run(["sh", "-c", 'ls -A -- "$1" 2>/dev/null || true', "sh", workdir]).stdout.split()


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Files that exist; the failures below happen before they could be read."""
    import numpy as np

    root = tmp_path_factory.mktemp("bad-input")
    (root / "model.onnx").write_bytes(b"never parsed: the device fails first")
    np.savez(root / "eval.npz", x=np.zeros((2, 1, 2, 2), np.float32), y=np.zeros(2, np.int64))
    return root / "model.onnx", root / "eval.npz"


@pytest.fixture
def blackhole() -> Iterator[int]:
    """A TCP port that accepts connections (kernel backlog) but never sends the SSH banner."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        yield server.getsockname()[1]


def test_unknown_device_name_suggests_the_near_miss(tmp_path):
    inventory = tmp_path / "devices.yaml"
    inventory.write_text("devices:\n  orin-nano:\n    kind: jetson\n    host: 10.0.0.7\n")
    with pytest.raises(UsageError) as caught:
        load_inventory(inventory).get_device("orin-nan")
    assert_one_line(caught.value, "'orin-nan'", "local, orin-nano", "Did you mean 'orin-nano'?")


def test_inventory_typo_and_silent_insecure_setting_are_config_errors(tmp_path):
    inventory = tmp_path / "devices.yaml"
    inventory.write_text("devices:\n  board:\n    host: 10.0.0.7\n    prot: 2222\n")
    with pytest.raises(ConfigError) as caught:
        load_inventory(inventory)
    assert_one_line(caught.value, "devices.board.prot")
    inventory.write_text("devices:\n  board:\n    host: 10.0.0.7\n    strict_host_key_checking: false\n")
    with pytest.raises(ConfigError) as caught:
        load_inventory(inventory)
    assert_one_line(caught.value, "insecure_accept_host_key: true")


def test_closed_port_is_refused_quickly(sshd, closed_port):
    started = time.monotonic()
    with pytest.raises(DeviceError) as caught:
        check_device(sshd.device(port=closed_port))
    assert_one_line(caught.value, "connection refused")
    assert time.monotonic() - started < 5


def test_silent_server_times_out_instead_of_hanging(sshd, blackhole):
    started = time.monotonic()
    with pytest.raises(DeviceError) as caught:
        check_device(sshd.device(port=blackhole, connect_timeout_s=2))
    assert_one_line(caught.value, "timed out after 2s connecting to")
    assert time.monotonic() - started < 10


def test_wrong_key_is_permission_denied(sshd):
    with pytest.raises(DeviceError) as caught:
        check_device(sshd.device(identity_file=sshd.other_key))
    assert_one_line(caught.value, "permission denied", "identity_file")


def test_unknown_host_key_is_refused_with_the_fix(sshd, tmp_path):
    empty_known_hosts = tmp_path / "known_hosts"
    empty_known_hosts.write_text("")
    with pytest.raises(DeviceError) as caught:
        check_device(sshd.device(known_hosts_file=empty_known_hosts))
    assert_one_line(caught.value, "host key", "unknown", "ssh-keyscan", "insecure_accept_host_key")
    assert empty_known_hosts.read_text() == ""  # nothing was trusted behind the user's back


def test_changed_host_key_is_refused(sshd, tmp_path):
    wrong_known_hosts = tmp_path / "known_hosts"
    other_pub = Path(f"{sshd.other_key}.pub").read_text().split()
    wrong_known_hosts.write_text(f"[127.0.0.1]:{sshd.port} {other_pub[0]} {other_pub[1]}\n")
    with pytest.raises(DeviceError) as caught:
        check_device(sshd.device(known_hosts_file=wrong_known_hosts))
    assert_one_line(caught.value, "CHANGED")


def test_explicit_opt_out_accepts_an_unknown_host_key(sshd, tmp_path):
    empty_known_hosts = tmp_path / "known_hosts"
    empty_known_hosts.write_text("")
    report = check_device(sshd.device(known_hosts_file=empty_known_hosts, insecure_accept_host_key=True))
    assert report["reachable"] is True
    assert f"[127.0.0.1]:{sshd.port}" in subprocess.run(
        ["ssh-keygen", "-F", f"[127.0.0.1]:{sshd.port}", "-f", str(empty_known_hosts)],
        capture_output=True, text=True).stdout  # accept-new recorded the key (trust on first use)


def test_missing_remote_python(sshd, artifact, tmp_path):
    device = sshd.device(remote_python="/nonexistent/python3", workdir=str(tmp_path / "wd-missing-python"))
    with pytest.raises(DeviceError) as caught:
        run_remote_bench(device, *artifact, "onnxruntime", BENCH)
    assert_one_line(caught.value, "'/nonexistent/python3' not found", "remote_python")
    assert workdir_entries(sshd, device.workdir) == []


@pytest.fixture(scope="module")
def python_without_onnxruntime(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The system python when it lacks onnxruntime (as here), else a fresh venv without it."""
    if SYSTEM_PYTHON.is_file():
        probe = subprocess.run([str(SYSTEM_PYTHON), "-c", "import onnxruntime"], capture_output=True)
        if probe.returncode != 0:
            return str(SYSTEM_PYTHON)
    venv = tmp_path_factory.mktemp("no-ort-venv")
    subprocess.run([str(SYSTEM_PYTHON), "-m", "venv", "--without-pip", str(venv)], check=True)
    return str(venv / "bin" / "python")


def test_remote_python_without_onnxruntime(sshd, artifact, python_without_onnxruntime, tmp_path):
    device = sshd.device(remote_python=python_without_onnxruntime, workdir=str(tmp_path / "wd-no-ort"))
    with pytest.raises(DeviceError) as caught:
        run_remote_bench(device, *artifact, "onnxruntime", BENCH)
    assert_one_line(caught.value, "onnxruntime is not importable", python_without_onnxruntime)
    assert workdir_entries(sshd, device.workdir) == []


def test_runtime_failure_on_device_cleans_up(sshd, artifact, tmp_path):
    """A corrupt model passes the pre-flight, is uploaded, fails in the runtime: its JSON error surfaces
    as one line and the per-run dir is removed anyway."""
    device = sshd.device(workdir=str(tmp_path / "wd-runtime-error"))
    with pytest.raises(DeviceError) as caught:
        run_remote_bench(device, *artifact, "onnxruntime", BENCH)
    assert_one_line(caught.value, "cidpipe_runtime on loopback", "failed", "cannot load")
    assert workdir_entries(sshd, device.workdir) == []


def test_remote_timeout_is_reported_and_stops_the_remote_command(sshd):
    """command_timeout_s bounds a remote command: reported as a timeout, not a hang, and the command is
    stopped on the device too (the loopback device is this machine, so its process table is ours)."""
    device = sshd.device(command_timeout_s=1)
    started = time.monotonic()
    with SshTarget(device) as target, pytest.raises(DeviceError) as caught:
        target.run(["sleep", "21.25"])
    assert_one_line(caught.value, "timed out after 1s", "command_timeout_s")
    assert time.monotonic() - started < 5
    processes = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert "sleep 21.25" not in processes


def test_dry_run_checks_an_ssh_device_before_any_compute(tmp_path):
    """`run --dry-run` is the CI pre-flight: an SSH device that cannot be reached fails it (exit 8), as a
    Jetson board already did, rather than failing after training."""
    from tests.conftest import run_cli, tiny_recipe_dict

    inventory = tmp_path / "devices.yaml"
    inventory.write_text(yaml.safe_dump({"devices": {"closed": {"kind": "ssh", "host": "127.0.0.1", "port": 1,
                                                                "connect_timeout_s": 5}}}))  # fmt: skip
    recipe = tiny_recipe_dict(tmp_path / "runs", bench={"enabled": True, "devices": ["local", "closed"],
                                                        "inventory": str(inventory)})  # fmt: skip
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    proc = run_cli("run", str(path), "--dry-run")
    assert proc.returncode == 8 and "connection refused by 127.0.0.1:1 (closed)" in proc.stderr, proc.stderr
    assert not (tmp_path / "runs").exists()

"""devices.yaml: where it is looked for, what it accepts, and what it refuses (no SSH needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cidpipe.bench.devices import load_inventory
from cidpipe.bench.devices.ssh import SshTarget, remote_command_string
from cidpipe.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parents[3] / "recipes" / "devices.example.yaml"


def test_example_inventory_validates():
    inventory = load_inventory(EXAMPLE)
    assert inventory.names == ["local", "orin", "pi5"]
    orin = inventory.get_device("orin")
    assert orin.kind == "jetson" and orin.host_key_policy == "yes"
    assert orin.address == "nvidia@192.168.1.50:22"
    assert inventory.get_device("pi5").known_hosts_file == EXAMPLE.parent / "lab_known_hosts"


def test_lookup_order_explicit_then_cwd_then_home(tmp_path, monkeypatch):
    home, cwd = tmp_path / "home", tmp_path / "cwd"
    (home / ".config" / "cidpipe").mkdir(parents=True)
    cwd.mkdir()
    (home / ".config" / "cidpipe" / "devices.yaml").write_text("devices:\n  from-home: {host: h}\n")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(cwd)
    assert "from-home" in load_inventory().names
    (cwd / "devices.yaml").write_text("devices:\n  from-cwd: {host: c}\n")
    assert load_inventory().names == ["local", "from-cwd"]
    assert load_inventory(EXAMPLE).path == EXAMPLE
    with pytest.raises(ConfigError, match="does not exist"):
        load_inventory(tmp_path / "missing.yaml")


@pytest.mark.parametrize(
    ("entry", "fragment"),
    [
        ("local: {kind: ssh, host: h}", "reserved"),
        ("b: {host: '-oProxyCommand=x'}", "not a host name"),
        ("b: {kind: jetson}", "needs a host"),
        ("b: {host: h, workdir: relative}", "absolute"),
        ("b: {host: h, env: {'A B': x}}", "variable name"),
    ],
)
def test_bad_entries_are_one_line_config_errors(tmp_path, entry, fragment):
    path = tmp_path / "devices.yaml"
    path.write_text(f"devices:\n  {entry}\n")
    with pytest.raises(ConfigError) as caught:
        load_inventory(path)
    assert fragment in str(caught.value) and "\n" not in str(caught.value)


def test_ssh_command_line_is_an_argument_list_with_safe_defaults(tmp_path):
    path = tmp_path / "devices.yaml"
    path.write_text("devices:\n  b: {host: board, user: me, port: 2222, identity_file: k, env: {X: 'a b'}}\n")
    target = SshTarget(load_inventory(path).get_device("b"))
    try:
        argv = target.ssh_argv(["python3", "-c", "print('hi; there')"])
    finally:
        target.close()
    assert argv[0] == "ssh" and argv[-3:-1] == ["--", "board"]
    joined = " ".join(argv[:-1])
    for option in ("BatchMode=yes", "StrictHostKeyChecking=yes", "ControlMaster=auto", "IdentitiesOnly=yes",
                   "ConnectTimeout=10", "-p 2222", f"-i {tmp_path / 'k'}", "-l me"):
        assert option in joined
    assert argv[-1] == remote_command_string(["python3", "-c", "print('hi; there')"], {"X": "a b"})
    assert argv[-1] == "env 'X=a b' python3 -c 'print('\"'\"'hi; there'\"'\"')'"

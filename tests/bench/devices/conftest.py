"""A real OpenSSH server on 127.0.0.1 for the device tests (session-scoped).

Everything is throw-away and lives in a temp dir: host key, client keys, authorized_keys, known_hosts,
sshd_config and pid file. CI only guarantees the ``openssh-server`` package; tests skip when
/usr/sbin/sshd is missing.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cidpipe.bench.devices.inventory import DeviceSpec

SSHD = Path("/usr/sbin/sshd")
# The venv's python has numpy + onnxruntime: it plays the board's python on the loopback "device".
REMOTE_PYTHON_WITH_ORT = sys.executable


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def make_key(path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "cidpipe-test", "-f", str(path)],
                   check=True, capture_output=True)
    return path


@dataclass
class LoopbackSshd:
    port: int
    user: str
    client_key: Path
    other_key: Path
    known_hosts: Path
    host_key_pub: Path
    root: Path

    def device(self, **overrides: object) -> DeviceSpec:
        fields: dict[str, object] = {
            "name": "loopback", "kind": "ssh", "host": "127.0.0.1", "port": self.port, "user": self.user,
            "identity_file": self.client_key, "known_hosts_file": self.known_hosts,
            "remote_python": REMOTE_PYTHON_WITH_ORT, "workdir": str(self.root / "remote-workdir"),
            "connect_timeout_s": 5, "command_timeout_s": 60,
        }
        fields.update(overrides)
        return DeviceSpec.model_validate(fields)


def _wait_for_banner(port: int, sshd: subprocess.Popen, log: Path, deadline_s: float = 10.0) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if sshd.poll() is not None:
            raise RuntimeError(f"sshd exited with {sshd.returncode}: {log.read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
                if conn.recv(64).startswith(b"SSH-"):
                    return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"sshd did not answer on port {port}: {log.read_text()[-2000:]}")


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopbackSshd]:
    if not SSHD.is_file() or shutil.which("ssh") is None or shutil.which("ssh-keygen") is None:
        pytest.skip("needs OpenSSH (/usr/sbin/sshd, ssh, ssh-keygen): apt-get install openssh-server")
    root = tmp_path_factory.mktemp("sshd")
    host_key = make_key(root / "ssh_host_ed25519_key")
    client_key = make_key(root / "client_key")
    other_key = make_key(root / "other_key")  # never authorized: the "wrong key" case
    (root / "authorized_keys").write_text((root / "client_key.pub").read_text())
    port = free_port()
    host_key_pub = root / "ssh_host_ed25519_key.pub"
    known_hosts = root / "known_hosts"
    key_type, key_blob = host_key_pub.read_text().split()[:2]
    known_hosts.write_text(f"[127.0.0.1]:{port} {key_type} {key_blob}\n")
    config = root / "sshd_config"
    config.write_text("\n".join([
        f"Port {port}", "ListenAddress 127.0.0.1", f"HostKey {host_key}", f"PidFile {root / 'sshd.pid'}",
        f"AuthorizedKeysFile {root / 'authorized_keys'}", "PermitRootLogin prohibit-password",
        "PubkeyAuthentication yes", "PasswordAuthentication no", "KbdInteractiveAuthentication no",
        "UsePAM no", "StrictModes no", "MaxStartups 64", "MaxSessions 64", "LogLevel VERBOSE", "",
    ]))
    # sshd refuses to start without its privilege-separation directory.
    Path("/run/sshd").mkdir(mode=0o755, parents=True, exist_ok=True)
    log = root / "sshd.log"
    with log.open("wb") as log_handle:
        server = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(config)], stdout=log_handle,
                                  stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        _wait_for_banner(port, server, log)
        yield LoopbackSshd(port=port, user=os.environ.get("USER") or _login_name(), client_key=client_key,
                           other_key=other_key, known_hosts=known_hosts, host_key_pub=host_key_pub, root=root)
    finally:
        server.terminate()
        try:
            server.wait(timeout=5)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@pytest.fixture
def closed_port() -> int:
    """A port on 127.0.0.1 nobody listens on (just released by the kernel)."""
    return free_port()


def _login_name() -> str:
    import pwd

    return pwd.getpwuid(os.getuid()).pw_name

"""Run commands on a device through the system OpenSSH client.

Why the ssh binary and not a Python SSH library: it honours the user's ~/.ssh/config, agent, ProxyJump and
known_hosts exactly as their own ``ssh`` does, and it adds no dependency. Every call is an argument list
(no local shell is involved). One master connection per :class:`SshTarget` is shared by all its calls
(ControlMaster), so a bench run pays the TCP + key exchange once.
"""

from __future__ import annotations

import math
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

from cidpipe.bench.devices.inventory import DeviceSpec
from cidpipe.errors import DeviceError, MissingDependency, UsageError

# Exit status the ssh client uses for its own failures (connection, authentication, host key).
SSH_CLIENT_FAILURE = 255
# Exit status of a POSIX shell for "command not found".
COMMAND_NOT_FOUND = 127
# Exit status of coreutils/busybox `timeout` when the time ran out.
REMOTE_TIMEOUT_STATUS = 124
# Killing the local ssh client does not stop a command on the device (no tty, so no SIGHUP), so every
# command runs under the device's own `timeout` when it has one; the local timeout is only a backstop.
_WITH_REMOTE_TIMEOUT = (
    'if command -v timeout >/dev/null 2>&1; then exec timeout -k 5 "$@"; fi; shift; exec "$@"'
)


def remote_command_string(argv: Sequence[str], env: Mapping[str, str] | None = None) -> str:
    """The string ssh hands to the remote login shell.

    ssh joins its arguments with spaces and the remote shell re-parses them, so an argument list cannot
    be passed through as a list. Quoting EVERY element with shlex.quote makes the remote shell see exactly
    the original list again (no globbing, no ``;``, no ``$(...)`` from a file name or a user value).
    """
    prefix = ["env", *(f"{key}={value}" for key, value in (env or {}).items())] if env else []
    return shlex.join([*prefix, *argv])


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


class SshTarget:
    """A connection to one ssh/jetson device. Use as a context manager so the master connection closes."""

    def __init__(self, device: DeviceSpec) -> None:
        if device.kind == "local":
            raise UsageError("device 'local' runs on this machine; it has no ssh connection")
        if shutil.which("ssh") is None:
            raise MissingDependency("the OpenSSH client 'ssh' is not on PATH; install openssh-client")
        self.device = device
        # Private (0700) directory for the multiplexing socket: nobody else may ride on our connection.
        self._control_dir = Path(tempfile.mkdtemp(prefix="cidpipe-ssh-"))
        self._connected = False

    def __enter__(self) -> SshTarget:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- option building ---------------------------------------------------------------------------
    def ssh_options(self) -> list[str]:
        device = self.device
        options = [
            "-o", "BatchMode=yes",  # never prompt for a password or a host key: fail instead
            "-o", f"ConnectTimeout={max(1, round(device.connect_timeout_s))}",
            "-o", "ServerAliveInterval=15",
            "-o", "ServerAliveCountMax=3",
            "-o", "ControlMaster=auto",
            "-o", f"ControlPath={self._control_dir}/%C",
            "-o", "ControlPersist=120",
            "-o", f"StrictHostKeyChecking={device.host_key_policy}",
            "-p", str(device.port),
        ]
        if device.ssh_config_file is not None:
            options = ["-F", str(device.ssh_config_file), *options]
        if device.host_key_policy == "no":
            # Explicit opt-out: do not record keys that will change again when the board is reflashed.
            options += ["-o", "UserKnownHostsFile=/dev/null"]
        elif device.known_hosts_file is not None:
            options += ["-o", f"UserKnownHostsFile={device.known_hosts_file}"]
        if device.identity_file is not None:
            options += ["-i", str(device.identity_file), "-o", "IdentitiesOnly=yes"]
        if device.user:
            options += ["-l", device.user]
        return options

    def ssh_argv(self, remote_argv: Sequence[str], env: Mapping[str, str] | None = None) -> list[str]:
        merged_env = {**self.device.env, **(env or {})}
        # "--" ends ssh's own options, so a host can never be read as an option.
        return ["ssh", *self.ssh_options(), "--", str(self.device.host),
                remote_command_string(remote_argv, merged_env)]

    # -- running -----------------------------------------------------------------------------------
    def connect(self) -> None:
        """Open the master connection (idempotent); connection problems become one-line DeviceErrors."""
        if self._connected:
            return
        completed = self._invoke(["true"], timeout=self.device.connect_timeout_s + 10, connecting=True)
        if completed.returncode != 0:  # also an ssh failure whose message _is_ssh_failure did not know
            raise DeviceError(self._explain_ssh_failure(completed.stderr))
        self._connected = True

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float | None = None,
        env: Mapping[str, str] | None = None,
        stdin: IO[bytes] | None = None,
        check: bool = False,
        what: str = "remote command",
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` on the device; returns the completed process (text stdout/stderr).

        ssh-level failures (rc 255) always raise DeviceError; a non-zero remote status raises only with
        ``check=True``. ``timeout`` defaults to the device's command_timeout_s.
        """
        self.connect()
        timeout = timeout or self.device.command_timeout_s
        wrapped = ["sh", "-c", _WITH_REMOTE_TIMEOUT, "sh", str(math.ceil(timeout)), *argv]
        completed = self._invoke(wrapped, timeout=timeout + 10, env=env, stdin=stdin, what=what)
        if completed.returncode == REMOTE_TIMEOUT_STATUS:
            raise DeviceError(
                f"{what} timed out after {math.ceil(timeout)}s on {self.device.name} "
                f"({self.device.address}); "
                "raise command_timeout_s in devices.yaml if it needs longer"
            )
        if check and completed.returncode != 0:
            detail = last_line(completed.stderr) or last_line(completed.stdout) or "no output"
            raise DeviceError(
                f"{what} failed on {self.device.name} ({self.device.address}) with status "
                f"{completed.returncode}: {detail}"
            )
        return completed

    def read_file(self, remote_path: str, *, timeout: float | None = None) -> bytes:
        """The bytes of a remote file (``cat`` over the shared connection)."""
        self.connect()
        argv = self.ssh_argv(["cat", "--", remote_path])
        try:
            completed = subprocess.run(argv, capture_output=True, stdin=subprocess.DEVNULL,
                                       timeout=timeout or self.device.command_timeout_s)
        except subprocess.TimeoutExpired as exc:
            raise DeviceError(f"reading {remote_path} from {self.device.address} timed out") from exc
        if completed.returncode != 0:
            stderr = completed.stderr.decode(errors="replace")
            raise DeviceError(f"cannot read {remote_path} on {self.device.name}: {last_line(stderr)}")
        return completed.stdout

    def close(self) -> None:
        """Stop the master connection and remove the private socket directory."""
        if self._connected:
            try:
                subprocess.run(["ssh", *self.ssh_options(), "-O", "exit", "--", str(self.device.host)],
                               capture_output=True, stdin=subprocess.DEVNULL, timeout=10)
            except subprocess.TimeoutExpired:
                pass  # the master ends by itself after ControlPersist; nothing to leak but a socket file
            self._connected = False
        shutil.rmtree(self._control_dir, ignore_errors=True)

    def _invoke(
        self,
        argv: Sequence[str],
        *,
        timeout: float,
        env: Mapping[str, str] | None = None,
        stdin: IO[bytes] | None = None,
        connecting: bool = False,
        what: str = "remote command",
    ) -> subprocess.CompletedProcess[str]:
        try:
            completed = subprocess.run(
                self.ssh_argv(argv, env), capture_output=True, timeout=timeout,
                stdin=stdin if stdin is not None else subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired as exc:
            if connecting:
                raise DeviceError(
                    f"timed out after {timeout:.0f}s connecting to {self.device.address} "
                    f"({self.device.name}); "
                    "check the host is up and reachable"
                ) from exc
            raise DeviceError(
                f"{what} timed out after {timeout:.0f}s on {self.device.name} ({self.device.address}); "
                "raise command_timeout_s in devices.yaml if it needs longer"
            ) from exc
        result = subprocess.CompletedProcess(
            completed.args, completed.returncode,
            completed.stdout.decode(errors="replace"), completed.stderr.decode(errors="replace"),
        )
        if result.returncode == SSH_CLIENT_FAILURE and self._is_ssh_failure(result.stderr):
            raise DeviceError(self._explain_ssh_failure(result.stderr))
        return result

    @staticmethod
    def _is_ssh_failure(stderr: str) -> bool:
        markers = ("ssh:", "Permission denied", "Host key verification failed", "Connection ", "kex_exchange",
                   "banner exchange", "Could not resolve", "Connection closed", "REMOTE HOST IDENTIFICATION")
        return any(marker in stderr for marker in markers)

    def _explain_ssh_failure(self, stderr: str) -> str:
        """Map the ssh client's stderr to one line saying what is wrong and what to do."""
        device = self.device
        where = f"{device.address} ({device.name})"
        known_hosts = device.known_hosts_file or "~/.ssh/known_hosts"
        if "REMOTE HOST IDENTIFICATION HAS CHANGED" in stderr:
            return (f"host key of {where} CHANGED since it was recorded in {known_hosts}; if the board was "
                    f"reflashed, remove the old line (ssh-keygen -R '[{device.host}]:{device.port}' -f "
                    f"{known_hosts}) and add the new key, otherwise investigate")
        if "Host key verification failed" in stderr or "No ED25519 host key is known" in stderr:
            return (f"host key of {where} is unknown: add it with 'ssh-keyscan -p {device.port} "
                    f"{device.host} >> {known_hosts}' after checking it, or set insecure_accept_host_key: "
                    "true for a lab board")
        if "Permission denied" in stderr:
            return (f"permission denied by {where}: check user and identity_file in devices.yaml "
                    "(the key's .pub must be in the device's ~/.ssh/authorized_keys)")
        if "Connection refused" in stderr:
            return f"connection refused by {where}: is sshd running and is the port right?"
        if "Could not resolve hostname" in stderr:
            return f"cannot resolve host {device.host!r} of device {device.name}: fix host in devices.yaml"
        if "timed out" in stderr or "Connection timed out" in stderr:
            return (f"timed out after {device.connect_timeout_s:.0f}s connecting to {where}; "
                    "check the host is up and answers ssh")
        if "No route to host" in stderr or "Network is unreachable" in stderr:
            return f"cannot reach {where}: {last_line(stderr).split(': ')[-1]}; check network and host"
        return f"ssh to {where} failed: {last_line(stderr)}"

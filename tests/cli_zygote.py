"""Run `python -m cidpipe ARGS` as a process forked from a warm interpreter (torch and the CLI imported once).

Most of the suite's time went into starting interpreters: each `cidpipe` subprocess spent about 2 s of CPU
importing torch before it looked at its arguments, and the suite starts several hundred. The zygote is a
long-lived `python` that has imported torch and cidpipe.cli; for each command it forks a child that takes
the command's working directory, environment, argv and sys.path[0] exactly as `python -m cidpipe` would get
them, with stdin from /dev/null and stdout/stderr to files, then runs the `cidpipe` package as __main__. The
child is a real separate process (its own exit status, signals, file descriptors); what differs from a fresh
interpreter is only that modules imported by the zygote are already in sys.modules, so commands whose
environment changes how Python imports (PYTHON* variables) are run in a fresh interpreter instead
(tests/conftest.py: run_cli), as is everything when CIDPIPE_TEST_FRESH_PROCESS=1.

Protocol (one JSON line each way, one command at a time): the test sends {"args", "cwd", "env", "stdout",
"stderr"}; the zygote answers {"pid"} once the child exists, then {"status"} (the waitpid status) when it
has ended.
"""

from __future__ import annotations

import atexit
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Imports the child would pay for on every start; nothing here may start threads (the fork copies only the
# forking thread) or read the environment at import time in a way a command depends on.
_ZYGOTE = r'''
import json, os, runpy, sys
import torch, numpy  # noqa: F401  (the expensive imports, paid once)
import cidpipe.cli.main  # noqa: F401
requests, replies = sys.stdin, sys.stdout
for line in requests:
    job = json.loads(line)
    pid = os.fork()
    if pid == 0:
        os.setsid()  # its own process group: a timeout kills the command and whatever it started
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        out = os.open(job["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        err = os.open(job["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(out, 1)
        os.dup2(err, 2)
        sys.stdin = open(0, closefd=False)
        sys.stdout = open(1, "w", closefd=False)
        sys.stderr = open(2, "w", closefd=False)
        code = 1
        try:
            os.chdir(job["cwd"])
            os.environ.clear()
            os.environ.update(job["env"])
            sys.path[0] = os.getcwd()  # what `python -m` puts first
            sys.argv = ["-m", *job["args"]]
            try:
                runpy.run_module("cidpipe", run_name="__main__", alter_sys=True)
                code = 0
            except SystemExit as exit_:
                if exit_.code is None:
                    code = 0
                elif isinstance(exit_.code, int):
                    code = exit_.code
                else:
                    print(exit_.code, file=sys.stderr)
                    code = 1
            except BaseException:
                import traceback
                traceback.print_exc()
                code = 1
            import atexit, threading
            threading._shutdown()
            atexit._run_exitfuncs()
        finally:
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except Exception:
                    pass
            os._exit(code & 0xFF)
    replies.write(json.dumps({"pid": pid}) + "\n")
    replies.flush()
    _, status = os.waitpid(pid, 0)
    replies.write(json.dumps({"status": status}) + "\n")
    replies.flush()
'''


class Zygote:
    """One warm interpreter per test process (started on first use, restarted if it died)."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen | None = None
        self._pending = b""

    def _start(self) -> subprocess.Popen:
        if self._proc is None or self._proc.poll() is not None:
            env = {**os.environ, "OMP_NUM_THREADS": "1"}
            self._proc = subprocess.Popen(
                [sys.executable, "-c", _ZYGOTE], stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0,
                env=env, cwd=Path(__file__).resolve().parent.parent,
            )
            self._pending = b""
            atexit.register(self.close)
        return self._proc

    def close(self) -> None:
        """End the zygote (its request stream closes; it exits when the stream ends)."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def run(self, args: list[str], *, cwd: Path | None, env: dict[str, str], timeout: float
            ) -> subprocess.CompletedProcess:
        proc = self._start()
        argv = [sys.executable, "-m", "cidpipe", *args]
        with tempfile.TemporaryDirectory(prefix="cidpipe-zygote-") as scratch:
            out, err = Path(scratch) / "stdout", Path(scratch) / "stderr"
            job = {"args": list(args), "cwd": str(cwd or os.getcwd()), "env": env, "stdout": str(out),
                   "stderr": str(err)}
            try:
                proc.stdin.write((json.dumps(job) + "\n").encode())
            except BrokenPipeError:  # it died since the last command: a new one
                proc = self._start()
                proc.stdin.write((json.dumps(job) + "\n").encode())
            pid = self._reply(None)["pid"]
            reply = self._reply(timeout)
            if reply is None:  # timed out: kill its process group, then let the zygote reap and report it
                try:
                    os.killpg(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self._reply(60)
                raise subprocess.TimeoutExpired(argv, timeout, *(_bytes(f) for f in (out, err)))
            status = reply["status"]
            code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
            return subprocess.CompletedProcess(argv, code, out.read_text(errors="replace"),
                                               err.read_text(errors="replace"))

    def _reply(self, timeout: float | None) -> dict | None:
        """The zygote's next reply line; None when ``timeout`` seconds pass without one."""
        deadline = None if timeout is None else time.monotonic() + timeout
        fd = self._proc.stdout.fileno()
        while b"\n" not in self._pending:
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([fd], [], [], wait)
            if not ready:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                raise RuntimeError("the cidpipe test zygote died")
            self._pending += chunk
        line, self._pending = self._pending.split(b"\n", 1)
        return json.loads(line)


def _bytes(path: Path) -> bytes:
    """What a killed command had written (nothing, if it died before opening its output)."""
    return path.read_bytes() if path.exists() else b""

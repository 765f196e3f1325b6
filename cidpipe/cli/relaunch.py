"""``--nproc N``: run the same verb as N training processes through torch.distributed.run (torchrun).

The command line is rebuilt from the parsed parameters of the running command (not from ``sys.argv``,
which is not the command line when ``cidpipe.cli.main.main(argv)`` is called from Python), minus
``--nproc``, and handed to torchrun as an argument list (no shell).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import typer

from cidpipe.errors import INTERRUPTED_EXIT, UsageError, WorkersFailed

# Directory (set by the launching process) where each rank records why it stopped: torchrun only knows
# exit statuses, and the launching process's last line should say what the ranks said.
RANK_REPORTS_ENV = "CIDPIPE_RANK_REPORTS"
# How long a Ctrl-C'd launch may take to stop its ranks (torchrun forwards the signal) before it is killed.
_STOP_GRACE_S = 30.0


def rebuilt_arguments(ctx: typer.Context, drop: set[str]) -> list[str]:
    """The verb and its parameters as a command line that parses back to the same values."""
    args: list[str] = [ctx.info_name or ctx.command.name or ""]
    for param in ctx.command.params:
        if param.name in drop:
            continue
        value = ctx.params.get(param.name)
        if param.param_type_name == "argument":
            args.extend(str(item) for item in (value if param.multiple else [value]) if item is not None)
        elif getattr(param, "is_flag", False):
            chosen = _flag_spelling(param, bool(value))
            if chosen:
                args.append(chosen)
        elif value is not None:
            for item in value if param.multiple else [value]:
                args.extend([param.opts[0], str(item)])
    return args


def _flag_spelling(param: Any, value: bool) -> str | None:
    if value:
        return param.opts[0]
    return param.secondary_opts[0] if param.secondary_opts else None


def torchrun_command(nproc: int, verb_args: list[str]) -> list[str]:
    """``python -m cidpipe.cli.torchrun --standalone --nproc-per-node N -m cidpipe VERB ...``.

    cidpipe.cli.torchrun is torch.distributed.run with the failing rank's exit status and no traceback.
    ``--standalone`` lets torchrun pick a free local rendezvous port, so two runs on one machine
    do not collide.
    """
    return [
        sys.executable,
        "-m",
        "cidpipe.cli.torchrun",
        "--standalone",
        f"--nproc-per-node={nproc}",
        "-m",
        "cidpipe",
        *verb_args,
    ]


def relaunch_if_requested(ctx: typer.Context, nproc: int) -> None:
    """With ``nproc > 1`` run this verb under torchrun and exit with its status; else return."""
    if nproc < 1:
        raise UsageError(f"--nproc must be at least 1, got {nproc}")
    if nproc == 1:
        return
    from cidpipe.training.distributed import launched_world_size  # imports torch: only when used

    if launched_world_size() > 1:
        raise UsageError("--nproc was given inside a torchrun launch; give one or the other, not both")
    command = torchrun_command(nproc, rebuilt_arguments(ctx, drop={"nproc"}))
    with tempfile.TemporaryDirectory(prefix="cidpipe-ranks-") as reports:
        # Each process gets one intra-op thread unless the user chose otherwise: N processes share the CPUs.
        env = {"OMP_NUM_THREADS": "1", **os.environ, RANK_REPORTS_ENV: reports}
        status = _run_launcher(command, env)
        failures = read_rank_reports(Path(reports))
    if status == 0:
        raise typer.Exit(0)
    raise_for_failed_launch(status, failures, nproc)


def _run_launcher(command: list[str], env: dict[str, str]) -> int:
    """Run torchrun; a Ctrl-C here is passed on to it (it stops the ranks) and then re-raised."""
    process = subprocess.Popen(command, env=env)
    try:
        return process.wait()
    except KeyboardInterrupt:
        # subprocess.run would SIGKILL torchrun after 0.25 s and orphan the ranks; let it stop them instead.
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=_STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        raise


def raise_for_failed_launch(status: int, failures: list[dict[str, Any]], nproc: int) -> None:
    """Turn a failed launch into the first failing rank's error (or KeyboardInterrupt for a Ctrl-C)."""
    causes = [report for report in failures if report["exit_code"] != INTERRUPTED_EXIT]
    if status in (INTERRUPTED_EXIT, -signal.SIGINT) and not causes:
        raise KeyboardInterrupt
    if causes:
        first = min(causes, key=lambda report: (report["time"], report["rank"]))  # the root cause
        others = len({report["rank"] for report in causes}) - 1
        also = f" ({others} more rank(s) failed too)" if others else ""
        raise WorkersFailed(
            f"rank {first['rank']} of {nproc} failed: {first['message']}{also}", first["exit_code"]
        )
    raise WorkersFailed(
        f"the {nproc} training processes under torchrun failed with exit status {status} and gave no "
        "reason (killed? out of memory?); see the output above",
        status if status > 0 else 1,
    )


def report_rank_failure(exit_code: int, message: str) -> None:
    """Inside a ``--nproc`` launch: record this rank's exit code and one-line error for the launcher."""
    directory, rank = os.environ.get(RANK_REPORTS_ENV), os.environ.get("RANK")
    if not directory or rank is None or not rank.isdigit():
        return
    report = {"rank": int(rank), "exit_code": int(exit_code), "message": message, "time": time.time()}
    target = Path(directory) / f"rank{rank}.json"
    try:
        tmp = target.with_suffix(".tmp")
        tmp.write_text(json.dumps(report))
        os.replace(tmp, target)  # the launcher never reads half a report
    except OSError:
        pass  # best effort: the exit status still reaches torchrun


def read_rank_reports(directory: Path) -> list[dict[str, Any]]:
    reports = []
    for path in sorted(directory.glob("rank*.json")):
        try:
            report = json.loads(path.read_text())
            reports.append(
                {
                    "rank": int(report["rank"]),
                    "exit_code": int(report["exit_code"]),
                    "message": str(report["message"]),
                    "time": float(report["time"]),
                }
            )
        except (OSError, ValueError, KeyError, TypeError):
            continue  # a rank killed mid-write; its exit status is still in torchrun's
    return reports

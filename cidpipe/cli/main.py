"""The ``cidpipe`` command: builds the Typer app and maps errors to one line and an exit code, once.

Why the exit status is computed here and not left to Typer: with ``standalone_mode=False`` (needed so that
our own exceptions reach this module instead of Typer's pretty printer) Typer does not exit at all. It
*returns* the status instead: a ``typer.Exit(n)`` raised by a verb, and Ctrl-C, which Typer turns into
``Exit(130)``, both come back as the integer return value of ``app(...)``. Ignoring that value made an
interrupted or failed run exit 0. :func:`exit_status` is the one place that turns every outcome
(return value or exception) into the documented code and at most one line on stderr.
"""

from __future__ import annotations

import errno
import os
import sys

import typer

from cidpipe.errors import EXIT_CODES, INTERRUPTED_EXIT, CidpipeError, interrupted_message

app = typer.Typer(
    name="cidpipe",
    help="Turn a large image classifier into a small, fast, verified edge model: "
    "train -> distill (CID) -> export -> quantize -> (TensorRT) -> bench -> gate/report.\n\n"
    "Exit codes: " + "; ".join(f"{code} {what}" for code, what in EXIT_CODES.items()),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode="rich",
)


@app.callback()
def _global_options(
    threads: int | None = typer.Option(
        None, "--threads", min=1, envvar="CIDPIPE_THREADS",
        help="CPU threads torch uses to train, distil and evaluate (before the command: cidpipe --threads 1 "
        "run ...); default: torch's own choice, one per core. On a shared or busy machine 1 can be many "
        "times faster (measured 12x per step on a loaded 2-core VM, BENCHMARKS.md). ONNX Runtime latency "
        "runs take bench.threads.",
    ),
) -> None:
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


# OSError numbers that mean "this path cannot be used": the user fixes them by choosing another path
# (--out, --junit, ...) or its permissions, so they are usage errors (exit 2), not surprises (exit 1).
_PERMISSION_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS}
_PATH_ERRNOS = {errno.ENOTDIR, errno.EISDIR, errno.EEXIST, errno.ENAMETOOLONG, errno.ENOENT, errno.ELOOP}
# Out of room: the user fixes it like a bad path (free space, or --out elsewhere), so exit 2 too.
_SPACE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}

_registered = False


def _register_verbs() -> None:
    # One small module per verb; each exposes register(app). Registered once per process, so calling
    # main() repeatedly from Python (tests, notebooks) does not add every verb again.
    global _registered
    if _registered:
        return
    from cidpipe.cli import verbs

    for module in verbs.all_modules():
        module.register(app)
    _registered = True


def _say(line: str) -> None:
    typer.echo(line, err=True)


def _fail(code: int, message: str, argv: list[str] | None = None, result: object = None) -> int:
    from cidpipe.cli.relaunch import report_rank_failure

    line = " ".join(str(message).split()) or "failed"  # one line, whatever the message held
    _say(f"error: {line}")
    report_rank_failure(code, line)  # under --nproc: tells the launching process why this rank stopped
    _json_error(argv, code, line, result)
    return code


def _json_error(argv: list[str] | None, code: int, line: str, result: object = None) -> None:
    """With --json the failure is also the one JSON object on stdout (docs/json.md)."""
    args = sys.argv[1:] if argv is None else argv
    if "--json" not in args:
        return
    try:
        from cidpipe.cli.json_contract import print_error

        print_error(args, code, line, result)
    except Exception:  # noqa: BLE001 - reporting an error must not raise another one
        pass


def _interrupted(argv: list[str] | None = None) -> int:
    from cidpipe.cli.relaunch import report_rank_failure

    message = interrupted_message(_verb_or_none(sys.argv[1:] if argv is None else argv))
    _say(message)
    report_rank_failure(INTERRUPTED_EXIT, message)
    _json_error(argv, INTERRUPTED_EXIT, message)
    return INTERRUPTED_EXIT


def _verb_or_none(args: list[str]) -> str | None:
    try:
        from cidpipe.cli.json_contract import verb_from_argv

        return verb_from_argv(args)
    except Exception:  # noqa: BLE001 - the Ctrl-C line must be printed whatever the arguments were
        return None


def _returned_status(returned: object) -> int:
    """The exit status Typer handed back: ``None`` (a verb that returned normally) is success."""
    if isinstance(returned, bool) or not isinstance(returned, int):
        return 0
    return returned


def describe_os_error(exc: OSError) -> tuple[int, str]:
    """(exit code, one line naming the path and what to do) for an OSError no stage turned into an error."""
    if exc.filename is None:
        # A failed write() on an open file carries no file name; say at least which run it belongs to.
        run_dir = _last_run_dir()
        where = f"under {run_dir}" if run_dir is not None else "a file of this command"
    else:
        where = f"{exc.filename}" + (f" -> {exc.filename2}" if exc.filename2 is not None else "")
    reason = exc.strerror or str(exc) or type(exc).__name__
    name = errno.errorcode.get(exc.errno or 0, "")
    reason = f"{reason} ({name})" if name else reason
    if exc.errno in _SPACE_ERRNOS:  # 2, as for a checkpoint write (cidpipe/training/checkpoint.py)
        return 2, f"cannot write {where}: {reason}; free space there or pass --out on a disk with room"
    if exc.errno in _PERMISSION_ERRNOS:
        return 2, f"cannot use {where}: {reason}; choose a writable path (e.g. another --out directory)"
    if exc.errno in _PATH_ERRNOS:
        return 2, f"cannot use {where}: {reason}; check the path (a file where a directory belongs?)"
    return 1, f"{where}: {reason} (rerun with CIDPIPE_DEBUG=1 for a traceback)"


def _last_run_dir():
    try:
        from cidpipe.cli.common import last_run_dir

        return last_run_dir()
    except Exception:  # noqa: BLE001 - describing an error must not raise one
        return None


def exit_status(argv: list[str] | None = None) -> int:
    """Run the command line ``argv``; return its exit status after printing at most one error line."""
    debug = os.environ.get("CIDPIPE_DEBUG") == "1"
    from cidpipe.cli.json_contract import set_argv

    set_argv(sys.argv[1:] if argv is None else argv)
    try:
        _register_verbs()
        returned = app(args=argv, standalone_mode=False, prog_name="cidpipe")
    except CidpipeError as err:
        if debug:
            raise
        return _fail(err.exit_code, str(err), argv, getattr(err, "result", None))
    except typer.Exit as done:  # Typer versions that re-raise instead of returning the code
        returned = done.exit_code
    except typer.TyperException as err:  # bad command line (unknown option, missing argument, ...)
        if debug:
            raise
        # An empty message is no_args_is_help: the help (the list of commands) has just been printed.
        return _fail(
            2, err.format_message() or "no command given; pick one of the commands listed above", argv
        )
    except (KeyboardInterrupt, typer.Abort):
        return _interrupted(argv)
    except OSError as exc:
        if debug:
            raise
        code, message = describe_os_error(exc)
        return _fail(code, message, argv)
    except Exception as exc:  # noqa: BLE001 - the single place that turns surprises into one line
        if debug:
            raise
        return _fail(
            1, f"unexpected {type(exc).__name__}: {exc} (rerun with CIDPIPE_DEBUG=1 for a traceback)", argv
        )
    status = _returned_status(returned)
    if status == INTERRUPTED_EXIT:  # Typer's own translation of Ctrl-C: it printed nothing
        return _interrupted(argv)
    if status != 0:
        return _fail(status, f"stopped with exit status {status}", argv)
    return 0


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: always ends the process with the documented exit status."""
    try:
        status = exit_status(argv)
    except KeyboardInterrupt:  # a second Ctrl-C while the first one was being reported
        status = INTERRUPTED_EXIT
    sys.exit(status)

"""``python -m cidpipe.cli.torchrun ARGS``: torch.distributed.run (torchrun) with an honest, quiet exit.

torchrun itself exits 1 whatever its workers exited with, and prints a ``ChildFailedError`` traceback (its
``@record`` main re-raises) over the workers' own one-line errors. This launcher runs the same parser and
launch function, but ends with the exit status of the first failing rank (so a dataset error in the
workers is still exit 3) and without a traceback; the cidpipe process that started it prints the final
``error:`` line (cidpipe.cli.relaunch).
"""

from __future__ import annotations

import signal
import sys

from cidpipe.errors import INTERRUPTED_EXIT


def _status_of(exitcode: int) -> int:
    # A worker killed by a signal has a negative exitcode (-15 for SIGTERM): report it as a shell does.
    if exitcode < 0:
        return 128 - exitcode
    return exitcode if exitcode > 0 else 1


def main(argv: list[str]) -> int:
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    try:
        run(parse_args(argv))
    except ChildFailedError as err:
        _rank, failure = err.get_first_failure()
        return _status_of(failure.exitcode)
    except SignalException as err:  # torchrun got SIGINT/SIGTERM and has stopped its workers
        return 128 + int(err.sigval)
    except KeyboardInterrupt:
        return INTERRUPTED_EXIT
    return 0


if __name__ == "__main__":
    # Until torchrun installs its own handlers, a Ctrl-C here must end quietly too.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:
        sys.exit(INTERRUPTED_EXIT)

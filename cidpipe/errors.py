"""Errors a user can act on.

Library code raises a subclass of :class:`CidpipeError`; the CLI maps it once to a one-line message
and the subclass's exit code (see README, "Exit codes"). A traceback is shown only with CIDPIPE_DEBUG=1.
"""

from __future__ import annotations


class CidpipeError(Exception):
    """Base class: ``str(err)`` is the one line shown to the user."""

    exit_code = 1
    # What the command produced before it failed (a bench's published rows, a gate's verdict): the --json
    # error reply carries it as ``result`` (cidpipe/cli/json_contract.py).
    result: object = None


class UsageError(CidpipeError):
    """Bad command line, recipe, override or gate file."""

    exit_code = 2


class ConfigError(UsageError):
    """The recipe does not validate (unknown key, wrong type, unknown name)."""


class DataError(CidpipeError):
    """A dataset cannot be found or read."""

    exit_code = 3


class ModelError(CidpipeError):
    """Unknown model, a checkpoint that is corrupt or does not match the recipe."""

    exit_code = 4


class TrainingDiverged(CidpipeError):
    """A NaN or inf loss; the last good checkpoint is kept."""

    exit_code = 5


class ParityError(CidpipeError):
    """An exported or quantized artifact does not predict what the PyTorch model predicts."""

    exit_code = 6


class MissingDependency(CidpipeError):
    """An optional dependency (tensorrt, pycuda, ...) is not importable here."""

    exit_code = 7


class DeviceError(CidpipeError):
    """A target device cannot be reached or lacks what the run needs."""

    exit_code = 8


class GateFailed(CidpipeError):
    """A regression gate check failed."""

    exit_code = 1


class WorkersFailed(CidpipeError):
    """The processes of a ``--nproc N`` launch failed; the exit code is that of the first failing rank.

    The code is per instance because the ranks ran the same verb and stopped with one of the codes above
    (a dataset error in every rank is still exit 3, not a generic 1).
    """

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code if exit_code > 0 else 1


# Ctrl-C: the status a shell gives a process killed by SIGINT (128 + 2), and the line saying what to do.
INTERRUPTED_EXIT = 130
INTERRUPTED_MESSAGE = "interrupted; nothing half-written was published; rerun the same command to continue"
# Verbs that can train (quantize: its QAT fine-tune); the others start their unfinished stage over.
_TRAINING_VERBS = frozenset({"run", "train", "distill", "quantize", "compare"})


def interrupted_message(verb: str | None) -> str:
    """The Ctrl-C line; for a verb that trains it also says that training resumes where it was."""
    if verb in _TRAINING_VERBS:
        return INTERRUPTED_MESSAGE + " (training resumes from its last epoch checkpoint)"
    return INTERRUPTED_MESSAGE


EXIT_CODES: dict[int, str] = {
    0: "success",
    1: "gate regression or unexpected failure",
    2: "usage error: bad command line, recipe, override or gate file",
    3: "data error: dataset missing or unreadable",
    4: "model error: unknown model, corrupt or mismatched checkpoint",
    5: "training diverged (NaN/inf loss); last good checkpoint kept",
    6: "parity or accuracy-budget failure of an exported/quantized artifact",
    7: "missing optional dependency (e.g. TensorRT)",
    8: "device error: unreachable, bad key, missing remote runtime, bench rows failed on a device",
    130: "interrupted (Ctrl-C); rerun to resume",
}

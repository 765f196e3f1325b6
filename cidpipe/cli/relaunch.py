"""``--nproc N``: run the same verb as N training processes through torch.distributed.run (torchrun).

The command line is rebuilt from the parsed parameters of the running command (not from ``sys.argv``,
which is not the command line when ``cidpipe.cli.main.main(argv)`` is called from Python), minus
``--nproc``, and handed to torchrun as an argument list (no shell).
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import typer

from cidpipe.errors import UsageError


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
    """``python -m torch.distributed.run --standalone --nproc-per-node N -m cidpipe VERB ...``.

    ``--standalone`` lets torchrun pick a free local rendezvous port, so two runs on one machine
    do not collide.
    """
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
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
    # Each process gets one intra-op thread unless the user chose otherwise: N processes share the CPUs.
    env = {"OMP_NUM_THREADS": "1", **os.environ}
    completed = subprocess.run(command, env=env, check=False)
    raise typer.Exit(completed.returncode)

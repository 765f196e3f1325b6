"""Plumbing shared by the stages: device choice, console, cached-stage handling."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from cidpipe.config import Recipe
from cidpipe.errors import UsageError
from cidpipe.manifest import Manifest, StageWork, cache_status, read_manifest

STAGE_DIRS = {
    "train": "teacher",
    "distill": "student",
    "quantize": "quantize",
    "export": "export",
    "bench": "bench",
    "gate": "gate",
    "report": "report",
}


def resolve_device(requested: str) -> str:
    import torch  # here, not at module level: `cidpipe --help` should not pay for importing torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(
            f"--device {requested} asked for a GPU but torch sees none here; use --device cpu or auto"
        )
    return requested


@dataclass
class StageOptions:
    device: str = "cpu"
    force: bool = False
    resume: bool = True
    console: Console | None = None

    @property
    def out(self) -> Console:
        return self.console or Console(stderr=True)


@dataclass
class StageResult:
    stage: str
    stage_dir: Path
    manifest: Manifest
    cached: bool


def reuse_if_cached(work: StageWork, options: StageOptions) -> StageResult | None:
    """The finished stage when its id and artifact hashes match and --force was not given."""
    if options.force:
        return None
    ok, _reason = cache_status(work.stage_dir, work.id)
    if not ok:
        return None
    options.out.print(
        f"[green]cached[/] {work.stage} ({work.stage_dir}) — same config, parents and artifacts"
    )
    return StageResult(work.stage, work.stage_dir, read_manifest(work.stage_dir), cached=True)


@contextlib.contextmanager
def discard_on_error(work: StageWork) -> Iterator[StageWork]:
    """Remove the work directory when the stage fails, so nothing half-written is left behind."""
    try:
        yield work
    except BaseException:
        work.discard()
        raise


def stage_dir(recipe: Recipe, verb: str) -> Path:
    return recipe.run_dir() / STAGE_DIRS[verb]

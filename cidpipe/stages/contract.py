"""The stage contract: what every pipeline stage declares, and what the pipeline does with it.

A stage is a name (its directory under the run and the ``stage`` of its manifest), the CLI verb that runs it,
and five answers about a recipe: whether it is enabled, which stages it reads (its parents), the part of the
recipe that makes its id (``config``), what can be refused before any work (``validate``), and how to build
it (``build``). The mechanics around ``build`` (ids, the cache check, the hidden work directory, publishing,
clean-up on error) live once in :mod:`cidpipe.pipeline`; a stage never opens or commits its own directory.

Stages that are not content-addressed (``addressed = False``: gate, report) are cheap readers of the
finished stages and run every time; their ``build`` gets no work directory and returns what the verb shows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cidpipe.errors import UsageError
from cidpipe.manifest import Manifest

if TYPE_CHECKING:
    from rich.console import Console

    from cidpipe.config import Recipe
    from cidpipe.manifest import StageWork


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
    def log(self) -> Console:
        """Where progress and one-line summaries go (stderr unless a console was given)."""
        if self.console is None:  # the Python API: the same console the CLI uses
            from cidpipe.console import make_console

            self.console = make_console(stderr=True)
        return self.console


@dataclass
class StageResult:
    stage: str
    stage_dir: Path
    manifest: Manifest
    cached: bool


@dataclass(frozen=True)
class Parent:
    """A finished parent stage as the child reads it: its directory and its verified manifest."""

    dir: Path
    manifest: Manifest


@dataclass
class Built:
    """What ``build`` hands back for the pipeline to publish.

    ``after_publish`` runs once the stage is committed: a bench whose device rows failed publishes its rows
    (they are worth keeping) and then raises, so the command still exits non-zero.
    """

    metrics: dict[str, Any]
    model: dict[str, Any] | None = None
    device: str = "cpu"
    after_publish: Callable[[Manifest], None] | None = None


# ``build`` returns this on a DDP rank other than 0: rank 0 publishes, the others read what it wrote.
PUBLISHED_BY_RANK_ZERO = None


class Stage:
    """Base class of the pipeline's stages; subclasses set ``name``/``verb`` and override what differs."""

    name: str = ""  # directory under the run and the manifest's ``stage``
    verb: str = ""  # the CLI verb, and the name the plan and --from/--only use
    addressed: bool = True  # content-addressed and cached; False: always runs (cheap readers)
    makes_deployables: bool = False  # its artifacts are model files the bench measures (ONNX, engines)

    def enabled(self, recipe: Recipe) -> bool:
        return True

    def parents(self, recipe: Recipe) -> tuple[str, ...]:
        """Names of the stages this one reads, all of them enabled whenever this one is."""
        return ()

    def config(self, recipe: Recipe) -> dict[str, Any]:
        """The part of the recipe that, with the parents' ids, makes this stage's id."""
        return {}

    def recipe_view(self, config: dict[str, Any]) -> dict[str, Any]:
        """A :meth:`config` (this recipe's, or the one a finished stage was made with) nested under the
        recipe's own key names, so the plan can name a changed key as the user would type it."""
        return config

    def plan_note(self, recipe: Recipe) -> str | None:
        """What the plan should add about a stage that will run (a teacher's head that will be reset)."""
        return None

    def validate(self, recipe: Recipe) -> None:
        """Refuse at plan time what ``build`` would refuse later (raise a CidpipeError)."""

    def reusable(self, recipe: Recipe, manifest: Manifest) -> tuple[bool, str]:
        """Whether a finished stage with the right id still answers this recipe (bench: every device)."""
        return True, "cached"

    def on_cached(self, recipe: Recipe, manifest: Manifest, options: StageOptions) -> None:
        """Called when the finished stage is reused: what it should still say (bench: tolerated failures)."""

    def build(
        self, recipe: Recipe, work: StageWork | None, inputs: dict[str, Parent], options: StageOptions
    ) -> Any:
        raise NotImplementedError(f"stage {self.name} has no build")

    def dir(self, recipe: Recipe) -> Path:
        return recipe.run_dir() / self.name

    def __repr__(self) -> str:
        return f"<stage {self.name} (cidpipe {self.verb})>"


@dataclass
class Plan:
    """One planned stage: its action in this run and why, and its id when it is content-addressed."""

    name: str  # the stage's name (its directory)
    action: str  # "run", "cached", "skip"
    reason: str
    id: str | None = None


@dataclass
class PipelineResult:
    plan: list[Plan]
    results: dict[str, Any] = field(default_factory=dict)

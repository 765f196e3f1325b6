"""Stage manifests: what a stage produced, from what, and whether it can be reused.

A stage's id is hash(stage, canonical config, parent ids). A stage is written into a hidden work directory
next to its final place (``runs/<name>/.<stage>.partial-<id>``), which also holds resumable checkpoints,
and renamed into place only when it is complete, so a half-written stage is never taken for a finished one.

A run directory may come from somewhere untrusted (a CI artifact, a colleague's tarball), so reading one is
verification, not trust:

- every artifact path is a plain relative path that resolves inside its stage directory (no absolute
  paths, no ``..``, no symlink out), so a manifest cannot make ``bench --device`` upload ``~/.ssh/...``;
- ``Manifest.artifact_path`` checks the file's size and sha256 before handing the path to any consumer;
- the manifest carries ``digest``, the sha256 of its own canonical content (config, metrics, artifacts,
  ...), so a hand-edited top-1 or p99 is detected. It is tamper-evidence against edits, not a signature:
  whoever can rewrite the file can recompute the digest, which is why artifacts are hashed as well.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from cidpipe.atomic import atomic_write_text
from cidpipe.errors import ModelError, UsageError
from cidpipe.hashing import hash_config
from cidpipe.machine import environment
from cidpipe.untrusted import load_json_file

# 2: manifests carry ``digest``. 3: artifacts carry their format (a name in cidpipe/export/formats.py) and
# role, ``status`` is gone (a published manifest is complete by construction). Older manifests are refused
# and their stages rerun.
SCHEMA_VERSION = 3
MANIFEST_NAME = "manifest.json"


class Artifact(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str
    sha256: str
    bytes: int
    format: str | None = None  # a model artifact's format; None for other files (results, build logs)
    role: str | None = None  # "teacher" | "student": whose model it is, when a stage holds both

    @field_validator("format")
    @classmethod
    def _known_format(cls, value: str | None) -> str | None:
        from cidpipe.export.formats import format_names

        if value is not None and value not in format_names():
            raise ValueError(f"unknown artifact format {value!r}; known: {', '.join(format_names())}")
        return value

    @field_validator("path")
    @classmethod
    def _plain_relative(cls, value: str) -> str:
        parts = value.split("/")
        if (
            not value
            or value.startswith("/")
            or "\\" in value
            or ":" in value
            or any(part in ("", ".", "..") for part in parts)
        ):
            raise ValueError(f"artifact path {value!r} must be a plain relative path inside the stage")
        return value

    @field_validator("sha256")
    @classmethod
    def _hex_digest(cls, value: str) -> str:
        if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
            raise ValueError("sha256 must be 64 lowercase hex digits")
        return value


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    schema_version: int = SCHEMA_VERSION
    stage: str
    id: str
    recipe: str = ""
    recipe_id: str = ""
    parents: dict[str, str] = {}
    config: dict[str, Any] = {}
    artifacts: dict[str, Artifact] = {}
    model: dict[str, Any] | None = None
    metrics: dict[str, Any] = {}
    env: dict[str, Any] = {}
    created_at: str = ""
    finished_at: str = ""
    digest: str = ""

    def artifact_path(self, stage_dir: Path, key: str) -> Path:
        """The verified path of artifact ``key``: inside ``stage_dir``, with its recorded size and sha256."""
        if key not in self.artifacts:
            raise UsageError(
                f"{stage_dir}: the {self.stage} stage has no '{key}' artifact "
                f"(has: {', '.join(self.artifacts) or 'none'})"
            )
        problem = check_artifact(Path(stage_dir), key, self.artifacts[key])
        if problem:
            raise ModelError(f"{problem}; rerun the {self.stage} stage (cidpipe run ... --force)")
        return Path(stage_dir) / self.artifacts[key].path

    def content_digest(self) -> str:
        """sha256 of the canonical JSON of every field but ``digest`` itself."""
        data = self.model_dump(mode="json", exclude={"digest"})
        text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
        return hashlib.sha256(text.encode()).hexdigest()


def check_artifact(stage_dir: Path, key: str, art: Artifact) -> str | None:
    """None when ``art`` is a regular file inside ``stage_dir`` with its recorded size and hash."""
    path = stage_dir / art.path
    try:
        inside = path.resolve(strict=True).is_relative_to(stage_dir.resolve(strict=True))
    except (OSError, RuntimeError):  # missing, or a symlink loop
        return f"artifact '{key}' ({path}) is missing"
    if not inside or path.is_symlink():
        return f"artifact '{key}' ({path}) is a symlink or points outside its stage directory"
    if not path.is_file():
        return f"artifact '{key}' ({path}) is not a regular file"
    if path.stat().st_size != art.bytes or sha256_file(path) != art.sha256:
        return f"artifact '{key}' ({path}) changed since it was written (sha256 mismatch)"
    return None


def stage_id(stage: str, config: Any, parents: dict[str, str]) -> str:
    return hash_config({"stage": stage, "config": config, "parents": dict(sorted(parents.items()))})


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def read_manifest(stage_dir: Path, stage: str | None = None) -> Manifest:
    """The typed, digest-verified manifest of ``stage_dir`` (of stage ``stage`` when given).

    A missing manifest is a usage error (exit 2: not a stage directory); a manifest that is corrupt, of
    another schema, of another stage or edited after it was written is a model error (exit 4) naming it.
    """
    path = Path(stage_dir) / MANIFEST_NAME
    if not path.is_file():
        raise UsageError(
            f"{stage_dir} is not a cidpipe stage directory (no {MANIFEST_NAME}); "
            "run the stage first or point at runs/<name>/<stage>"
        )
    rerun = "delete the stage directory and rerun it"
    data = load_json_file(path, "manifest", ModelError)
    if not isinstance(data, dict):
        raise ModelError(f"{path} does not hold a JSON object; {rerun}")
    if "schema" in data and "schema_version" not in data:
        data["schema_version"] = data.pop("schema")
    if data.get("schema_version") != SCHEMA_VERSION:
        raise ModelError(
            f"{path} has manifest schema {data.get('schema_version')!r}, this cidpipe reads "
            f"{SCHEMA_VERSION}; {rerun}"
        )
    try:
        manifest = Manifest.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ModelError(f"{path} is corrupt ('{where}': {first['msg']}); {rerun}") from None
    if manifest.digest != manifest.content_digest():
        raise ModelError(f"{path} was edited after it was written (digest mismatch); {rerun}")
    if stage is not None and manifest.stage != stage:
        raise ModelError(f"{path} is a '{manifest.stage}' manifest where a '{stage}' one belongs; {rerun}")
    return manifest


def manifest_to_json(manifest: Manifest) -> str:
    data = manifest.model_dump(mode="json")
    data = {"schema": data.pop("schema_version"), **data}
    return json.dumps(data, indent=2, sort_keys=False) + "\n"


def verify_artifacts(stage_dir: Path, manifest: Manifest) -> str | None:
    """None when every artifact is inside the stage with its recorded size and hash, else why not."""
    for key, art in manifest.artifacts.items():
        problem = check_artifact(Path(stage_dir), key, art)
        if problem:
            return problem
    return None


def cache_status(
    stage_dir: Path, expected_id: str, *, describe_change: Callable[[Manifest], str] | None = None
) -> tuple[bool, str]:
    """(reusable, reason) for the plan printed by `cidpipe run --dry-run`; ``describe_change`` says what
    differs when the finished stage has another id (cidpipe.stage_changes)."""
    if not (Path(stage_dir) / MANIFEST_NAME).is_file():
        return False, "not run yet"
    try:
        manifest = read_manifest(stage_dir)
    except (UsageError, ModelError) as err:
        return False, f"manifest not trusted ({str(err).split(';')[0]})"
    if manifest.id != expected_id:
        return False, describe_change(manifest) if describe_change else "config or a parent changed"
    problem = verify_artifacts(Path(stage_dir), manifest)
    if problem:
        return False, problem
    return True, "cached"


def partial_dir(stage_dir: Path, stage_id: str) -> Path:
    """Where the stage of id ``stage_id`` is built, and keeps its epoch checkpoints until it is published."""
    stage_dir = Path(stage_dir)
    return stage_dir.parent / f".{stage_dir.name}.partial-{stage_id[:16]}"


def kept_checkpoints(stage_dir: Path, stage_id: str) -> list[Path]:
    """The epoch checkpoints an interrupted build of this stage id left (a rerun resumes from them)."""
    folder = partial_dir(stage_dir, stage_id) / "checkpoints"
    return sorted(folder.glob("*.pt")) if folder.is_dir() and not folder.is_symlink() else []


class StageWork:
    """Builds one stage in a hidden work directory and publishes it atomically with :meth:`commit`."""

    def __init__(
        self,
        stage_dir: Path,
        stage: str,
        config: Any,
        parents: dict[str, str],
        *,
        recipe: str = "",
        recipe_id: str = "",
    ) -> None:
        self.stage_dir = Path(stage_dir)
        self.stage = stage
        self.config = config
        self.parents = dict(parents)
        self.id = stage_id(stage, config, parents)
        self.recipe, self.recipe_id = recipe, recipe_id
        self.work_dir = partial_dir(self.stage_dir, self.id)
        self.created_at = now_iso()
        self._artifacts: dict[str, tuple[str, str | None, str | None]] = {}

    def open(self) -> StageWork:
        try:
            self.work_dir.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise UsageError(
                f"cannot create {self.work_dir}: {err.strerror or err}; choose a writable --out directory"
            ) from None
        return self

    def path(self, name: str) -> Path:
        return self.work_dir / name

    def add_artifact(
        self, key: str, relative_path: str, *, format: str | None = None, role: str | None = None
    ) -> None:
        if not (self.work_dir / relative_path).is_file():
            raise RuntimeError(f"artifact {relative_path} was not written into {self.work_dir}")
        self._artifacts[key] = (relative_path, format, role)

    def commit(
        self,
        *,
        metrics: dict[str, Any],
        model: dict[str, Any] | None = None,
        device: str = "cpu",
        keep: tuple[str, ...] = (),
    ) -> Manifest:
        """Hash the artifacts, write the manifest and swap the work directory into place.

        Files in the work directory that are neither artifacts nor in ``keep`` (checkpoints, temporaries)
        are removed first: a published stage holds only what its manifest lists.
        """
        wanted = {rel for rel, _fmt, _role in self._artifacts.values()} | set(keep)
        for path in sorted(self.work_dir.rglob("*"), reverse=True):
            rel = path.relative_to(self.work_dir).as_posix()
            if path.is_file() and rel not in wanted:
                path.unlink()
            elif path.is_dir() and not any(path.iterdir()):
                path.rmdir()
        artifacts = {
            key: Artifact(
                path=rel,
                sha256=sha256_file(self.work_dir / rel),
                bytes=(self.work_dir / rel).stat().st_size,
                format=fmt,
                role=role,
            )
            for key, (rel, fmt, role) in self._artifacts.items()
        }
        manifest = Manifest(
            stage=self.stage,
            id=self.id,
            recipe=self.recipe,
            recipe_id=self.recipe_id,
            parents=self.parents,
            config=self.config,
            artifacts=artifacts,
            model=model,
            metrics=metrics,
            env=environment(device),
            created_at=self.created_at,
            finished_at=now_iso(),
        )
        manifest.digest = manifest.content_digest()
        atomic_write_text(self.work_dir / MANIFEST_NAME, manifest_to_json(manifest))
        check_replaceable(self.stage_dir, self.stage)
        publish_directory(self.work_dir, self.stage_dir)
        return manifest

    def discard(self) -> None:
        shutil.rmtree(self.work_dir, ignore_errors=True)


def check_replaceable(stage_dir: Path, stage: str) -> None:
    """Refuse to replace anything at ``stage_dir`` that is not a cidpipe ``stage`` directory.

    Publishing moves the old directory aside and deletes it; that must never hit a user's own folder
    that happens to carry a stage's name, nor follow a symlink to somewhere else.
    """
    if not stage_dir.exists() and not stage_dir.is_symlink():
        return
    refuse = (
        f"{stage_dir} exists and is not a cidpipe '{stage}' stage directory; "
        "move it away or choose another run name / --out (cidpipe never deletes what it did not write)"
    )
    if stage_dir.is_symlink() or not stage_dir.is_dir():
        raise UsageError(refuse)
    try:
        data = json.loads((stage_dir / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        raise UsageError(refuse) from None
    if not isinstance(data, dict) or data.get("stage") != stage:
        raise UsageError(refuse)


def publish_directory(src: Path, dst: Path) -> None:
    """Replace ``dst`` by ``src``; the old ``dst`` is moved aside first so no mix of both ever exists."""
    old = None
    if dst.exists():
        old = dst.with_name(f".{dst.name}.old-{os.getpid()}")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(dst, old)
    os.replace(src, dst)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)

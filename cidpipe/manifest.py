"""Stage manifests: what a stage produced, from what, and whether it can be reused.

A stage's id is hash(stage, canonical config, parent ids). A stage is written into a hidden work directory
next to its final place (``runs/<name>/.<stage>.partial-<id>``), which also holds resumable checkpoints,
and renamed into place only when it is complete, so a half-written stage is never taken for a finished one.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import socket
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

import cidpipe
from cidpipe.atomic import atomic_write_text
from cidpipe.config import hash_config
from cidpipe.errors import UsageError

SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"


class Artifact(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str
    sha256: str
    bytes: int


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
    status: str = "complete"

    def artifact_path(self, stage_dir: Path, key: str) -> Path:
        if key not in self.artifacts:
            raise UsageError(
                f"{stage_dir}: the {self.stage} stage has no '{key}' artifact "
                f"(has: {', '.join(self.artifacts) or 'none'})"
            )
        return stage_dir / self.artifacts[key].path


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


def read_manifest(stage_dir: Path) -> Manifest:
    path = Path(stage_dir) / MANIFEST_NAME
    if not path.is_file():
        raise UsageError(
            f"{stage_dir} is not a cidpipe stage directory (no {MANIFEST_NAME}); "
            "run the stage first or point at runs/<name>/<stage>"
        )
    try:
        data = json.loads(path.read_text())
        if "schema" in data and "schema_version" not in data:
            data["schema_version"] = data.pop("schema")
        return Manifest.model_validate(data)
    except (json.JSONDecodeError, ValidationError) as exc:
        raise UsageError(
            f"{path} is corrupt ({str(exc).splitlines()[0]}); delete the stage and rerun it"
        ) from None


def manifest_to_json(manifest: Manifest) -> str:
    data = manifest.model_dump(mode="json")
    data = {"schema": data.pop("schema_version"), **data}
    return json.dumps(data, indent=2, sort_keys=False) + "\n"


def verify_artifacts(stage_dir: Path, manifest: Manifest) -> str | None:
    """None when every artifact exists with its recorded hash, else why not."""
    for key, art in manifest.artifacts.items():
        path = stage_dir / art.path
        if not path.is_file():
            return f"artifact '{key}' is missing"
        if path.stat().st_size != art.bytes or sha256_file(path) != art.sha256:
            return f"artifact '{key}' changed since it was written"
    return None


def cache_status(stage_dir: Path, expected_id: str) -> tuple[bool, str]:
    """(reusable, reason) for the plan printed by `cidpipe run --dry-run`."""
    if not (Path(stage_dir) / MANIFEST_NAME).is_file():
        return False, "not run yet"
    try:
        manifest = read_manifest(stage_dir)
    except UsageError:
        return False, "manifest unreadable"
    if manifest.status != "complete":
        return False, f"status is {manifest.status}"
    if manifest.id != expected_id:
        return False, "config or a parent changed"
    problem = verify_artifacts(Path(stage_dir), manifest)
    if problem:
        return False, problem
    return True, "cached"


def git_sha() -> str | None:
    root = Path(cidpipe.__file__).resolve().parent.parent
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def environment(device: str) -> dict[str, Any]:
    import torch

    env: dict[str, Any] = {
        "cidpipe": cidpipe.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "hostname": socket.gethostname(),
        "device": device,
        "git_sha": git_sha(),
        "cpu_count": os.cpu_count(),
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return env


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
        self.work_dir = self.stage_dir.parent / f".{self.stage_dir.name}.partial-{self.id[:16]}"
        self.created_at = now_iso()
        self._artifacts: dict[str, str] = {}

    def open(self) -> StageWork:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        return self

    def path(self, name: str) -> Path:
        return self.work_dir / name

    def add_artifact(self, key: str, relative_path: str) -> None:
        if not (self.work_dir / relative_path).is_file():
            raise RuntimeError(f"artifact {relative_path} was not written into {self.work_dir}")
        self._artifacts[key] = relative_path

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
        wanted = set(self._artifacts.values()) | set(keep)
        for path in sorted(self.work_dir.rglob("*"), reverse=True):
            rel = path.relative_to(self.work_dir).as_posix()
            if path.is_file() and rel not in wanted:
                path.unlink()
            elif path.is_dir() and not any(path.iterdir()):
                path.rmdir()
        artifacts = {
            key: Artifact(
                path=rel, sha256=sha256_file(self.work_dir / rel), bytes=(self.work_dir / rel).stat().st_size
            )
            for key, rel in self._artifacts.items()
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
            status="complete",
        )
        atomic_write_text(self.work_dir / MANIFEST_NAME, manifest_to_json(manifest))
        publish_directory(self.work_dir, self.stage_dir)
        return manifest

    def discard(self) -> None:
        shutil.rmtree(self.work_dir, ignore_errors=True)


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

"""Files that try to run code: each payload would create a marker file if it ran; it must not exist after.

Through the real CLI (exit code, one line, no traceback, nothing written outside the run directory): a
CIFAR batch whose pickle calls ``os.system``, a weights file that is a pickle with the same call, and a
``python:`` model source naming a module that writes the marker when imported (refused unless the user opts
in with CIDPIPE_ALLOW_PYTHON_MODELS=1), also when it arrives through a run directory's manifest.
"""

from __future__ import annotations

import json
import os
import pickle
import shlex
from pathlib import Path

import torch

from cidpipe.manifest import Manifest, manifest_to_json
from tests.conftest import run_cli
from tests.data.data_fakes import write_fake_cifar
from tests.trust.hostile import assert_clean_failure, assert_nothing_outside, tree_snapshot, write_recipe


class _System:
    """Unpickles to ``os.system(command)``."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def _touch(marker: Path) -> str:
    return f"touch {shlex.quote(str(marker))}"


def _fails_without_running(tmp_path: Path, marker: Path, args: list[str], code: int, needle: str, env=None):
    before = tree_snapshot(tmp_path)
    result = run_cli(*args, cwd=tmp_path, env=env)
    assert_clean_failure(result, code, needle)
    assert not marker.exists(), "the payload ran"
    assert_nothing_outside(before, tree_snapshot(tmp_path), allowed_prefix="runs")


def test_a_cifar_batch_that_calls_os_system_is_refused(tmp_path):
    marker = tmp_path / "pwned-cifar"
    records = write_fake_cifar(tmp_path / "cifar", "cifar10")
    record = dict(records["data_batch_1"], labels=_System(_touch(marker)))
    (tmp_path / "cifar" / "cifar-10-batches-py" / "data_batch_1").write_bytes(
        pickle.dumps(record, protocol=2)
    )
    recipe = write_recipe(
        tmp_path, data={"name": "cifar10", "root": str(tmp_path / "cifar"), "input_size": 16}
    )
    _fails_without_running(tmp_path, marker, ["run", str(recipe), "--device", "cpu"], 3, "cifar")


def test_a_weights_file_that_calls_os_system_is_refused(tmp_path):
    marker = tmp_path / "pwned-weights"
    weights = tmp_path / "teacher.pt"
    torch.save({"conv.weight": _System(_touch(marker))}, weights)  # a pickle, not tensors
    recipe = write_recipe(tmp_path, teacher={"model": {"arch": "tinycnn", "weights": str(weights)}})
    _fails_without_running(tmp_path, marker, ["run", str(recipe), "--device", "cpu"], 4, "teacher.pt")


def _marker_module(tmp_path: Path, marker: Path) -> Path:
    package = tmp_path / "site"
    package.mkdir()
    (package / "evil_nets.py").write_text(
        f"open({str(marker)!r}, 'w').close()\n\ndef build(num_classes):\n    raise SystemExit\n"
    )
    return package


def test_a_python_model_source_is_not_imported_without_the_opt_in(tmp_path):
    marker = tmp_path / "pwned-import"
    site = _marker_module(tmp_path, marker)
    recipe = write_recipe(tmp_path, teacher={"model": {"arch": "python:evil_nets:build"}})
    env = {"PYTHONPATH": str(site), "CIDPIPE_ALLOW_PYTHON_MODELS": ""}
    args = ["run", str(recipe), "--device", "cpu"]
    _fails_without_running(tmp_path, marker, args, 4, "CIDPIPE_ALLOW_PYTHON_MODELS=1", env=env)


def test_a_run_directory_whose_manifest_names_python_code_is_not_imported(tmp_path):
    """An attacker who can rewrite a manifest can recompute its digest: the opt-in is what stops it."""
    marker = tmp_path / "pwned-manifest"
    site = _marker_module(tmp_path, marker)
    stage = tmp_path / "runs" / "tiny" / "teacher"
    stage.mkdir(parents=True)
    weights = stage / "model.safetensors"
    weights.write_bytes(b"{}")
    model = {"arch": "python:evil_nets:build", "kwargs": {}, "num_classes": 10, "input_shape": [3, 16, 16],
             "class_names": [str(i) for i in range(10)], "mean": [0.5] * 3, "std": [0.25] * 3,
             "head": {"head": "plain"}}  # fmt: skip
    from cidpipe.manifest import sha256_file

    manifest = Manifest(
        stage="teacher",
        id="0" * 64,
        model=model,
        artifacts={
            "model": {
                "path": "model.safetensors",
                "sha256": sha256_file(weights),
                "bytes": 2,
                "format": "torch",
            }
        },
    )
    manifest.digest = manifest.content_digest()
    (stage / "manifest.json").write_text(manifest_to_json(manifest))
    recipe = write_recipe(tmp_path)
    (tmp_path / "runs" / "tiny" / "recipe.yaml").write_text(recipe.read_text())
    env = {"PYTHONPATH": str(site), "CIDPIPE_ALLOW_PYTHON_MODELS": ""}
    _fails_without_running(
        tmp_path, marker, ["eval", str(stage)], 4, "CIDPIPE_ALLOW_PYTHON_MODELS=1", env=env
    )
    assert json.loads((stage / "manifest.json").read_text())["model"]["arch"] == "python:evil_nets:build"

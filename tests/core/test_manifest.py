"""Stage manifests: ids, atomic publication, cache validity."""

from __future__ import annotations

import json

from cidpipe.manifest import StageWork, cache_status, read_manifest, stage_id


def _publish(tmp_path, config, payload=b"weights"):
    work = StageWork(tmp_path / "run" / "teacher", "teacher", config, {}, recipe="r", recipe_id="x").open()
    work.path("model.bin").write_bytes(payload)
    work.path("checkpoints").mkdir()
    work.path("checkpoints/last.pt").write_bytes(b"resumable state")
    work.add_artifact("model", "model.bin")
    return work, work.commit(metrics={"test_top1": 90.0}, model={"arch": "a"})


def test_id_depends_on_stage_config_and_parents():
    assert stage_id("s", {"a": 1}, {}) == stage_id("s", {"a": 1}, {})
    assert stage_id("s", {"a": 1}, {}) != stage_id("s", {"a": 2}, {})
    assert stage_id("s", {"a": 1}, {"teacher": "x"}) != stage_id("s", {"a": 1}, {"teacher": "y"})
    assert stage_id("s", {"a": 1, "b": 2}, {}) == stage_id("s", {"b": 2, "a": 1}, {})


def test_commit_publishes_only_artifacts_and_manifest(tmp_path):
    work, manifest = _publish(tmp_path, {"epochs": 1})
    stage = tmp_path / "run" / "teacher"
    assert sorted(p.name for p in stage.iterdir()) == ["manifest.json", "model.bin"]
    assert not work.work_dir.exists()
    data = json.loads((stage / "manifest.json").read_text())
    assert data["schema"] == 1 and data["status"] == "complete"
    assert data["artifacts"]["model"]["bytes"] == len(b"weights")
    assert set(data["env"]) >= {"cidpipe", "torch", "python", "device", "git_sha"}
    assert read_manifest(stage).id == manifest.id


def test_cache_detects_changed_config_and_tampered_artifact(tmp_path):
    work, manifest = _publish(tmp_path, {"epochs": 1})
    stage = tmp_path / "run" / "teacher"
    assert cache_status(stage, manifest.id) == (True, "cached")
    assert cache_status(stage, "other")[0] is False
    (stage / "model.bin").write_bytes(b"weightz")
    assert cache_status(stage, manifest.id) == (False, "artifact 'model' changed since it was written")


def test_a_partial_stage_is_never_taken_for_a_finished_one(tmp_path):
    work = StageWork(tmp_path / "run" / "teacher", "teacher", {"e": 1}, {}).open()
    work.path("model.bin").write_bytes(b"half")
    assert cache_status(tmp_path / "run" / "teacher", work.id) == (False, "not run yet")


def test_republishing_replaces_the_old_stage(tmp_path):
    _publish(tmp_path, {"epochs": 1}, b"one")
    _, second = _publish(tmp_path, {"epochs": 2}, b"two")
    stage = tmp_path / "run" / "teacher"
    assert (stage / "model.bin").read_bytes() == b"two"
    assert read_manifest(stage).id == second.id
    assert [p.name for p in stage.parent.iterdir()] == ["teacher"]

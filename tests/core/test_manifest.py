"""Stage manifests: ids, atomic publication, cache validity."""

from __future__ import annotations

import json

import pytest

from cidpipe.errors import ModelError, UsageError
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
    assert data["schema"] == 3 and "status" not in data
    assert len(data["digest"]) == 64
    assert data["artifacts"]["model"]["bytes"] == len(b"weights")
    assert set(data["env"]) >= {"cidpipe", "torch", "python", "device", "git_sha"}
    assert read_manifest(stage).id == manifest.id


def test_cache_detects_changed_config_and_tampered_artifact(tmp_path):
    work, manifest = _publish(tmp_path, {"epochs": 1})
    stage = tmp_path / "run" / "teacher"
    assert cache_status(stage, manifest.id) == (True, "cached")
    assert cache_status(stage, "other")[0] is False
    (stage / "model.bin").write_bytes(b"weightz")
    reusable, reason = cache_status(stage, manifest.id)
    assert not reusable and reason.startswith("artifact 'model'") and "sha256 mismatch" in reason


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


def _edit_manifest(stage, change):
    path = stage / "manifest.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data, indent=2))


def test_an_edited_metric_is_detected_by_the_digest(tmp_path):
    _, manifest = _publish(tmp_path, {"epochs": 1})
    stage = tmp_path / "run" / "teacher"
    _edit_manifest(stage, lambda d: d["metrics"].update(test_top1=99.9))
    with pytest.raises(ModelError, match="edited after it was written"):
        read_manifest(stage)
    reusable, reason = cache_status(stage, manifest.id)
    assert not reusable and "digest mismatch" in reason


def test_a_manifest_of_the_old_schema_is_refused(tmp_path):
    _publish(tmp_path, {"epochs": 1})
    stage = tmp_path / "run" / "teacher"
    _edit_manifest(stage, lambda d: (d.update(schema=1), d.pop("digest")))
    with pytest.raises(ModelError, match="manifest schema 1"):
        read_manifest(stage)


@pytest.mark.parametrize(
    "bad", ["/etc/passwd", "../teacher2/model.bin", "a/../../x", "", "./model.bin", "c:x", "a\\..\\b"]
)
def test_artifact_paths_must_stay_inside_the_stage(tmp_path, bad):
    _publish(tmp_path, {"epochs": 1})
    stage = tmp_path / "run" / "teacher"
    _edit_manifest(stage, lambda d: d["artifacts"]["model"].update(path=bad))
    with pytest.raises(ModelError, match="corrupt"):
        read_manifest(stage)


def test_a_symlinked_artifact_is_refused_even_with_the_right_hash(tmp_path):
    _, manifest = _publish(tmp_path, {"epochs": 1})
    stage = tmp_path / "run" / "teacher"
    secret = tmp_path / "secret"
    secret.write_bytes((stage / "model.bin").read_bytes())  # same bytes, same sha256
    (stage / "model.bin").unlink()
    (stage / "model.bin").symlink_to(secret)
    with pytest.raises(ModelError, match="symlink or points outside"):
        read_manifest(stage).artifact_path(stage, "model")
    assert cache_status(stage, manifest.id)[0] is False


def test_artifact_path_verifies_the_hash_before_use(tmp_path):
    _publish(tmp_path, {"epochs": 1})
    stage = tmp_path / "run" / "teacher"
    manifest = read_manifest(stage)
    assert manifest.artifact_path(stage, "model").read_bytes() == b"weights"
    (stage / "model.bin").write_bytes(b"swapped")
    with pytest.raises(ModelError, match="sha256 mismatch"):
        manifest.artifact_path(stage, "model")


def test_publishing_never_replaces_a_directory_cidpipe_did_not_write(tmp_path):
    mine = tmp_path / "run" / "teacher"
    mine.mkdir(parents=True)
    (mine / "thesis.tex").write_text("years of work")
    with pytest.raises(UsageError, match="not a cidpipe 'teacher' stage directory"):
        _publish(tmp_path, {"epochs": 1})
    assert (mine / "thesis.tex").read_text() == "years of work"


def test_publishing_refuses_a_symlinked_stage_directory(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "teacher").symlink_to(elsewhere)
    with pytest.raises(UsageError, match="not a cidpipe 'teacher' stage directory"):
        _publish(tmp_path, {"epochs": 1})
    assert elsewhere.is_dir()

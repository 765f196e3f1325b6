"""Run directories from an untrusted source (a CI artifact, a colleague's tarball) through the real CLI.

One real run (teacher, student, export, INT8, local bench) is made once; each test tampers with a copy the
way an attacker or a careless user would and checks that every consumer notices: exit 4 naming the file
for changed numbers or artifacts, exit 2 for broken gate files and baselines, never a PASS.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from cidpipe.manifest import Artifact, Manifest, manifest_to_json
from tests.conftest import json_reply, run_cli, tiny_recipe_dict
from tests.trust.hostile import BOMB, assert_clean_failure, assert_nothing_outside, tree_snapshot

FAST_BENCH = {"enabled": True, "runs": 5, "min_seconds": 0.0, "warmup_runs": 1, "warmup_seconds": 0.0,
              "batch_sizes": [1], "max_eval_samples": 64}  # fmt: skip


def _recipe_dict(out_dir: Path) -> dict:
    return tiny_recipe_dict(
        out_dir,
        export={"enabled": True},
        quantize={"enabled": True, "calibration": {"samples": 32}},
        bench=FAST_BENCH,
        gate={"enabled": True, "min_top1": 1.0},
    )


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("finished")
    recipe = root / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(_recipe_dict(root / "runs")))
    result = run_cli("run", str(recipe), "--device", "cpu", cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    return root / "runs" / "tiny"


@pytest.fixture
def run_copy(finished_run, tmp_path) -> Path:
    copy = tmp_path / "runs" / "tiny"
    shutil.copytree(finished_run, copy, symlinks=True)
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(_recipe_dict(tmp_path / "runs")))
    return copy


def _rewrite(stage_dir: Path, change, *, recompute_digest: bool) -> None:
    """Edit a manifest as a hand would (digest left stale) or as an attacker would (digest recomputed)."""
    path = stage_dir / "manifest.json"
    data = json.loads(path.read_text())
    change(data)
    if recompute_digest:
        data["schema_version"] = data.pop("schema")
        data.pop("digest")
        # model_construct skips validation, as an attacker's own tooling would.
        artifacts = {key: Artifact.model_construct(**art) for key, art in data["artifacts"].items()}
        manifest = Manifest.model_construct(**{**data, "artifacts": artifacts})
        data["digest"] = manifest.content_digest()
        data["schema"] = data.pop("schema_version")
    path.write_text(json.dumps(data, indent=2))


def _fails(tmp_path, args, code, needle):
    before = tree_snapshot(tmp_path)
    result = run_cli(*args, cwd=tmp_path)
    line = assert_clean_failure(result, code, needle)
    assert_nothing_outside(before, tree_snapshot(tmp_path), allowed_prefix="runs/tiny/gate")
    return line


def test_the_untouched_run_passes_its_gate(run_copy, tmp_path):
    result = run_cli("gate", str(run_copy), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]


def test_a_hand_edited_top1_fails_the_gate(run_copy, tmp_path):
    _rewrite(run_copy / "student", lambda d: d["metrics"].update(test_top1=99.99), recompute_digest=False)
    _fails(tmp_path, ["gate", str(run_copy)], 4, "student/manifest.json was edited")


def test_a_hand_edited_p99_fails_the_gate(run_copy, tmp_path):
    def faster(data):
        for row in data["metrics"]["results"]:
            row["latency"]["p99_ms"] = 0.001

    _rewrite(run_copy / "bench", faster, recompute_digest=False)
    _fails(tmp_path, ["gate", str(run_copy)], 4, "bench/manifest.json was edited")


def test_a_garbage_int8_model_fails_the_gate(run_copy, tmp_path):
    (run_copy / "quantize" / "model.int8.onnx").write_bytes(b"not a model at all")
    _fails(tmp_path, ["gate", str(run_copy)], 4, "model.int8.onnx")


def test_an_edited_bench_result_file_fails_the_gate(run_copy, tmp_path):
    results = run_copy / "bench" / "results.json"
    results.write_text(results.read_text().replace('"pass"', '"pass" '))
    _fails(tmp_path, ["gate", str(run_copy)], 4, "results.json")


def test_an_artifact_path_pointing_at_a_secret_is_refused_even_with_a_valid_digest(run_copy, tmp_path):
    """With the digest recomputed the manifest is self-consistent; the path rule alone must stop it."""
    secret = tmp_path / "id_ed25519"
    secret.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\n")

    def point_at_secret(data):
        data["artifacts"]["int8"]["path"] = str(secret)

    _rewrite(run_copy / "quantize", point_at_secret, recompute_digest=True)
    _fails(tmp_path, ["bench", str(run_copy), "--force"], 4, "quantize/manifest.json is corrupt")


def test_a_dotdot_artifact_path_is_refused(run_copy, tmp_path):
    def escape(data):
        data["artifacts"]["model"]["path"] = "../../../id_ed25519"

    _rewrite(run_copy / "export", escape, recompute_digest=True)
    _fails(tmp_path, ["gate", str(run_copy)], 4, "export/manifest.json is corrupt")


def test_a_symlinked_artifact_with_the_right_bytes_is_refused(run_copy, tmp_path):
    onnx = run_copy / "quantize" / "model.int8.onnx"
    outside = tmp_path / "outside.onnx"
    outside.write_bytes(onnx.read_bytes())
    onnx.unlink()
    onnx.symlink_to(outside)
    _fails(tmp_path, ["gate", str(run_copy)], 4, "symlink or points outside")


def test_dry_run_does_not_call_a_tampered_stage_cached(run_copy, tmp_path):
    _rewrite(run_copy / "student", lambda d: d["metrics"].update(test_top1=99.99), recompute_digest=False)
    result = run_cli("run", str(tmp_path / "recipe.yaml"), "--dry-run", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    plan = {step["name"]: step for step in json_reply(result)["plan"]}
    assert plan["teacher"]["action"] == "cached"
    assert plan["student"]["action"] == "run" and "not trusted" in plan["student"]["reason"]


def test_quantize_force_refuses_a_swapped_onnx(run_copy, tmp_path):
    onnx = run_copy / "export" / "model.onnx"
    onnx.write_bytes(onnx.read_bytes()[:-16] + b"\0" * 16)
    before = (run_copy / "quantize" / "model.int8.onnx").read_bytes()
    _fails(tmp_path, ["quantize", str(run_copy), "--force"], 4, "export/model.onnx")
    assert (run_copy / "quantize" / "model.int8.onnx").read_bytes() == before


def test_a_manifest_of_another_stage_is_refused(run_copy, tmp_path):
    shutil.copy(run_copy / "export" / "manifest.json", run_copy / "quantize" / "manifest.json")
    _fails(tmp_path, ["gate", str(run_copy)], 4, "is a 'export' manifest")


def test_a_manifest_that_is_not_utf8_is_one_line(run_copy, tmp_path):
    (run_copy / "bench" / "manifest.json").write_bytes(b'{"stage": "b\xffench"}')
    _fails(tmp_path, ["gate", str(run_copy)], 4, "not UTF-8")


def test_a_deeply_nested_manifest_is_one_line(run_copy, tmp_path):
    (run_copy / "bench" / "manifest.json").write_text("[" * 100_000 + "]" * 100_000)
    _fails(tmp_path, ["gate", str(run_copy)], 4, "nested too deeply")


@pytest.mark.parametrize(
    "baseline, needle",
    [
        ({"kind": "cidpipe-baseline", "results": [{"top1": "high"}]}, "results.0.top1"),
        ({"kind": "cidpipe-baseline", "results": [{"p99_ms": -1}]}, "results.0.p99_ms"),
        ({"kind": "cidpipe-baseline", "results": "all of them"}, "results"),
        ({"kind": "cidpipe-baseline", "student": {"test_top1": [1]}}, "student.test_top1"),
        ({"kind": "something-else"}, "not a cidpipe baseline"),
        ([1, 2, 3], "not a cidpipe baseline"),
    ],
)
def test_a_wrongly_typed_baseline_is_a_usage_error(run_copy, tmp_path, baseline, needle):
    path = tmp_path / "base.json"
    path.write_text(json.dumps(baseline))
    _fails(tmp_path, ["gate", str(run_copy), "--baseline", str(path)], 2, needle)


def test_a_baseline_that_is_not_utf8_or_too_deep_is_one_line(run_copy, tmp_path):
    path = tmp_path / "base.json"
    path.write_bytes(b'{"kind": "cidpipe-baseline\xfe"}')
    _fails(tmp_path, ["gate", str(run_copy), "--baseline", str(path)], 2, "not UTF-8")
    path.write_text('{"kind": "cidpipe-baseline", "x": ' + "[" * 5000 + "]" * 5000 + "}")
    _fails(tmp_path, ["gate", str(run_copy), "--baseline", str(path)], 2, "nested too deeply")


def test_a_gate_file_alias_bomb_is_refused(run_copy, tmp_path):
    path = tmp_path / "gate.yaml"
    path.write_text(BOMB + "latency: *i\n")
    _fails(tmp_path, ["gate", str(run_copy), "--gate", str(path)], 2, "expands to more than")


def test_an_inventory_alias_bomb_is_refused(run_copy, tmp_path):
    path = tmp_path / "devices.yaml"
    path.write_text(BOMB + "devices: {board: {kind: ssh, host: *i}}\n")
    _fails(tmp_path, ["bench", str(run_copy), "--inventory", str(path), "--device", "board"], 2,
           "expands to more than")  # fmt: skip


def test_a_run_directory_given_as_dotdot_is_not_a_run(run_copy, tmp_path):
    _fails(tmp_path, ["gate", str(run_copy / "..")], 2, "not a run directory")


def test_a_cached_rerun_clears_debris_but_keeps_resume_state(run_copy, tmp_path):
    stale = run_copy / ".export.partial-0123456789abcdef"
    stale.mkdir()
    (stale / ".model.onnx.k2j3.tmp").write_bytes(b"half an onnx")
    resumable = run_copy / ".student.partial-fedcba9876543210"
    (resumable / "checkpoints").mkdir(parents=True)
    (resumable / "checkpoints" / "seed0.pt").write_bytes(b"epoch 3 state")
    (resumable / "checkpoints" / ".seed0.pt.x8.tmp").write_bytes(b"half a checkpoint")
    (run_copy / ".recipe.yaml.q1.tmp").write_text("half a recipe")
    result = run_cli("run", str(tmp_path / "recipe.yaml"), "--device", "cpu", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert not stale.exists() and not (run_copy / ".recipe.yaml.q1.tmp").exists()
    assert sorted(p.name for p in (resumable / "checkpoints").iterdir()) == ["seed0.pt"]


def test_a_data_error_mid_training_leaves_no_partial_directory(tmp_path):
    from PIL import Image

    for split in ("train", "test"):
        for label in ("a", "b"):
            folder = tmp_path / "images" / split / label
            folder.mkdir(parents=True)
            for index in range(6):
                Image.new("RGB", (16, 16), (index * 40, 0, 0)).save(folder / f"{index}.png")
    broken = tmp_path / "images" / "train" / "b" / "5.png"
    broken.write_bytes(broken.read_bytes()[:40])  # a truncated PNG: found by the scan, fails to decode
    data = {"name": "imagefolder", "root": str(tmp_path / "images"), "input_size": 16, "batch_size": 4}
    recipe = tiny_recipe_dict(tmp_path / "runs", data=data)
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    result = run_cli("train", str(path), "--device", "cpu", cwd=tmp_path)
    assert_clean_failure(result, 3, "5.png")
    run_dir = tmp_path / "runs" / "tiny"
    assert not run_dir.exists() or not [p for p in run_dir.iterdir() if ".partial-" in p.name]


def test_the_recorded_manifest_round_trips_through_the_typed_reader(finished_run):
    from cidpipe.manifest import read_manifest

    for stage in ("teacher", "student", "export", "quantize", "bench"):
        manifest = read_manifest(finished_run / stage, stage)
        assert manifest_to_json(manifest) == (finished_run / stage / "manifest.json").read_text()

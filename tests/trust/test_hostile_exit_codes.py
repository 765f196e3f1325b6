"""Exit codes that must not lie: every failure below ends with its documented code and one 'error:' line.

Each case runs the real ``cidpipe`` entry point (tests.conftest.run_cli) and checks from outside what a CI
job sees: the exit status (README, "Exit codes"), a last stderr line that says what to fix, no traceback,
and, where the failure happens before any work, nothing written.

The device cases use the real sshd on 127.0.0.1 of tests/bench/devices; a "device that answers garbage" is a
remote_python that is a small shell script on that loopback "board".
"""

from __future__ import annotations

import errno
import json
import stat
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import yaml
from onnx import TensorProto, helper

from tests.bench.devices import conftest as device_fixtures
from tests.conftest import json_reply, run_cli
from tests.trust.hostile import (
    assert_clean_failure,
    assert_nothing_outside,
    one_epoch_kd_export,
    tree_snapshot,
    write_recipe,
)

# The loopback sshd of tests/bench/devices (skips without OpenSSH), made a fixture of this module too.
sshd = device_fixtures.sshd

FAST_BENCH = [
    "--runs", "3", "--set", "bench.min_seconds=0", "--set", "bench.warmup_runs=1",
    "--set", "bench.warmup_seconds=0", "--set", "bench.max_eval_samples=64",
]  # fmt: skip


@pytest.fixture(scope="module")
def exported_run(tmp_path_factory) -> Path:
    """A finished run with an exported ONNX student (teacher and KD student, one epoch each)."""
    root = tmp_path_factory.mktemp("exported")
    recipe = write_recipe(root, **one_epoch_kd_export())
    done = run_cli("run", str(recipe), "--device", "cpu", timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    run_dir = root / "runs" / "tiny"
    assert (run_dir / "export" / "model.onnx").is_file()
    return run_dir


def _linear_onnx(path: Path, image: tuple[int, int, int], classes: int) -> Path:
    """A valid classifier ONNX of another shape: [N, *image] -> [N, classes]."""
    features = int(np.prod(image))
    weight = np.random.default_rng(0).standard_normal((features, classes)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Flatten", ["input"], ["flat"]),
            helper.make_node("MatMul", ["flat", "w"], ["logits"]),
        ],
        "other",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", *image])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes])],
        initializer=[helper.make_tensor("w", TensorProto.FLOAT, weight.shape, weight.flatten())],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


# -- command line and recipe values that used to end as "unexpected ..." (exit 1) or exit 0 -----------------


def test_unknown_training_device_is_a_usage_error(tmp_path):
    result = run_cli("train", str(write_recipe(tmp_path)), "--device", "tpu")
    assert_clean_failure(result, 2, "--device 'tpu'")
    assert not (tmp_path / "runs").exists(), "refused before anything was written"


def test_zero_batch_size_on_the_command_line(exported_run):
    before = tree_snapshot(exported_run)
    result = run_cli("bench", str(exported_run), "--batch-sizes", "0", *FAST_BENCH)
    assert_clean_failure(result, 2, "--batch-sizes")
    assert_nothing_outside(before, tree_snapshot(exported_run))


def test_zero_batch_size_in_the_recipe():
    result = run_cli("recipes", "show", "quickstart", "--set", "bench.batch_sizes=[1, 0]")
    assert_clean_failure(result, 2, "batch size 0")


@pytest.mark.parametrize("opset", ["99", "6"])
def test_export_opset_outside_what_torch_exports(exported_run, opset):
    """--opset 99 used to exit 0 with a manifest saying 99 over an opset-18 file; 6 ended in onnxruntime."""
    before = tree_snapshot(exported_run)
    result = run_cli("export", str(exported_run / "student"), "--opset", opset, "--force")
    assert_clean_failure(result, 2, f"opset {opset}")
    assert_nothing_outside(before, tree_snapshot(exported_run))  # the published export is untouched


def test_export_records_the_opset_in_the_file(exported_run, tmp_path):
    done = run_cli("export", str(exported_run / "student"), "--opset", "13", "--force", "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    manifest = json.loads((exported_run / "export" / "manifest.json").read_text())
    proto = onnx.load(str(exported_run / "export" / "model.onnx"), load_external_data=False)
    in_file = next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
    assert in_file == 13
    assert manifest["config"]["opset"] == 13 and manifest["metrics"]["parity"]["opset"] == 13
    restored = run_cli("export", str(exported_run / "student"), "--force")  # back to the default opset
    assert restored.returncode == 0, restored.stderr[-3000:]


# -- an ONNX file of another model --------------------------------------------------------------------------


def test_eval_of_an_onnx_with_another_input_shape(exported_run, tmp_path):
    wrong = _linear_onnx(tmp_path / "other-input.onnx", (1, 8, 8), 10)
    result = run_cli("eval", str(exported_run), "--artifact", str(wrong))
    assert_clean_failure(result, 4, "takes input [N, 1, 8, 8]")


def test_eval_of_an_onnx_file_with_another_class_count(exported_run):
    inside = exported_run / "foreign"  # `cidpipe eval FILE.onnx`: the run is found from the file's place
    inside.mkdir(exist_ok=True)
    wrong = _linear_onnx(inside / "three-classes.onnx", (3, 16, 16), 3)
    result = run_cli("eval", str(wrong))
    assert_clean_failure(result, 4, "10 classes")


def _folders(root: Path, classes: list[str]) -> Path:
    """An image folder with a few random 16 px PNGs per class."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for name in classes:
        (root / name).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(root / name / f"{i}.png")
    return root


@pytest.mark.parametrize("artifact", [False, True])
def test_eval_on_data_with_other_classes_is_refused_not_scored(exported_run, tmp_path, artifact):
    """A 10-class digits model scored on 3 classes, or on 10 classes of other names, gives numbers that look
    like accuracy (it used to print them with exit 0)."""
    onnx_file = ["--artifact", str(exported_run / "export" / "model.onnx")] if artifact else []
    for classes, needle in (
        (["a", "b", "c"],
         "predicts 10 classes (0, 1, 2, 3, 4, 5, 6, 7, ... 2 more) but the data has 3 (a, b, c)"),
        ([f"k{i}" for i in range(10)], "was trained on the classes 0, 1, 2"),
    ):
        root = _folders(tmp_path / f"{len(classes)}-{artifact}", classes)
        data = ["--set", "data.name=imagefolder", "--set", f"data.root={root}",
                "--set", "data.val_fraction=0.25"]
        result = run_cli("eval", str(exported_run), *onnx_file, *data)
        assert_clean_failure(result, 4, needle)


def test_eval_of_an_onnx_file_outside_any_run(tmp_path):
    wrong = _linear_onnx(tmp_path / "lonely.onnx", (3, 16, 16), 10)
    result = run_cli("eval", str(wrong))
    assert_clean_failure(result, 2, "--artifact")


# -- devices: failures inside bench are exit 8, and the rows are still published ----------------------------


def _inventory(tmp_path: Path, sshd, name: str = "loop", **overrides) -> Path:
    device = sshd.device(name=name, **overrides).model_dump(mode="json", exclude={"name"}, exclude_none=True)
    path = tmp_path / "devices.yaml"
    path.write_text(yaml.safe_dump({"devices": {name: device}}))
    return path


def _script(path: Path, body: str) -> str:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return str(path)


def _bench(run_dir: Path, inventory: Path, *devices: str, extra: tuple[str, ...] = ()):
    names = [part for device in devices for part in ("--device", device)]
    return run_cli("bench", str(run_dir), *names, "--inventory", str(inventory), *FAST_BENCH, *extra)


def _published_rows(run_dir: Path) -> list[dict]:
    manifest = json.loads((run_dir / "bench" / "manifest.json").read_text())
    assert manifest["digest"]
    return json.loads((run_dir / "bench" / "results.json").read_text())


@pytest.mark.ssh
def test_bench_on_a_device_with_an_unknown_host_key(exported_run, sshd, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    result = _bench(exported_run, _inventory(tmp_path, sshd, known_hosts_file=empty), "loop")
    assert_clean_failure(result, 8, "host key")
    rows = _published_rows(exported_run)
    assert rows and all(row["status"] == "failed" and row["failure"] == "device" for row in rows)
    assert empty.read_text() == "", "nothing was trusted behind the user's back"


@pytest.mark.ssh
def test_bench_on_a_device_without_its_remote_python(exported_run, sshd, tmp_path):
    inventory = _inventory(tmp_path, sshd, remote_python="/nonexistent/python3")
    result = _bench(exported_run, inventory, "loop", extra=("--tolerate-device-failures",))
    # Tolerating failures needs something that did run: a bench where every row failed is still exit 8.
    assert_clean_failure(result, 8, "/nonexistent/python3")
    assert all(row["failure"] == "device" for row in _published_rows(exported_run))


@pytest.mark.ssh
@pytest.mark.slow
def test_partial_device_failure_fails_unless_tolerated(exported_run, sshd, tmp_path):
    inventory = _inventory(tmp_path, sshd, remote_python="/nonexistent/python3")
    first = _bench(exported_run, inventory, "local", "loop", extra=("--json",))
    assert_clean_failure(first, 8, "--tolerate-device-failures")
    rows = json_reply(first, ok=False)["results"]  # the published rows ride on the error reply
    assert rows == _published_rows(exported_run)
    assert {row["status"] for row in rows if row["device"] == "local"} == {"pass"}
    assert {row["failure"] for row in rows if row["device"] == "loop"} == {"device"}

    again = _bench(exported_run, inventory, "local", "loop")  # the same command: not a green "cached"
    assert_clean_failure(again, 8, "loop")

    tolerated = _bench(exported_run, inventory, "local", "loop", extra=("--tolerate-device-failures",))
    assert tolerated.returncode == 0, tolerated.stderr[-3000:]
    assert "tolerated" in tolerated.stderr


@pytest.mark.ssh
@pytest.mark.parametrize(
    "reply, needle",
    [("[1, 2, 3]", "JSON list"), ('{"python": "3.11"}', "wrong shape")],
    ids=["json-list", "missing-keys"],
)
def test_device_check_of_a_python_that_answers_garbage(sshd, tmp_path, reply, needle):
    fake = _script(tmp_path / "fake-python", f"echo '{reply}'\n")
    result = run_cli(
        "devices", "check", "loop", "--inventory", str(_inventory(tmp_path, sshd, remote_python=fake))
    )
    assert_clean_failure(result, 8, needle)


@pytest.mark.ssh
def test_bench_on_a_runtime_that_answers_the_wrong_shape(exported_run, sshd, tmp_path):
    # The probe runs with the real python; only `python -m cidpipe_runtime ...` answers nonsense.
    nonsense = '{"accuracy": {"top1": "high"}, "latency": "fast"}'
    body = f"""if [ "$1" = "-m" ]; then echo '{nonsense}'; exit 0; fi
exec {sys.executable} "$@"
"""
    inventory = _inventory(tmp_path, sshd, remote_python=_script(tmp_path / "liar-python", body))
    result = _bench(exported_run, inventory, "loop")
    assert_clean_failure(result, 8, "wrong shape")


# -- --nproc: the ranks' failure is the command's failure ---------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(200)
def test_failing_ranks_fail_the_launch_with_their_code(tmp_path):
    """A dataset error only the ranks see (the parent just parses the recipe): exit 3, not torchrun's 0/1."""
    recipe = write_recipe(tmp_path, data={"name": "fashion-mnist", "root": str(tmp_path / "nowhere")})
    result = run_cli("train", str(recipe), "--device", "cpu", "--nproc", "2", timeout=180)
    last = assert_clean_failure(result, 3, "nowhere")
    assert last.startswith("error: rank "), last
    assert "ChildFailedError" not in result.stderr


# -- OSErrors that no stage turned into a CidpipeError: say which path --------------------------------------


def _main_with(monkeypatch, capsys, error: OSError, *args: str) -> tuple[int, list[str]]:
    from cidpipe.cli.main import main

    def fail(*_args, **_kwargs):
        raise error

    monkeypatch.setattr("cidpipe.stages.train.run_train", fail)
    with pytest.raises(SystemExit) as stopped:
        main(list(args))
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    return stopped.value.code, lines


def test_disk_full_without_a_file_name_names_the_run_dir(tmp_path, monkeypatch, capsys):
    recipe = write_recipe(tmp_path)
    full = OSError(errno.ENOSPC, "No space left on device")  # what a failed write() on an open file gives
    code, lines = _main_with(monkeypatch, capsys, full, "train", str(recipe), "--device", "cpu")
    assert code == 2 and len(lines) == 1, lines
    assert lines[0].startswith("error: ") and "No space left" in lines[0]
    assert str(tmp_path / "runs" / "tiny") in lines[0]


def test_permission_denied_is_a_usage_error_naming_the_path(tmp_path, monkeypatch, capsys):
    recipe = write_recipe(tmp_path)
    denied = PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "runs" / "tiny" / "x"))
    code, lines = _main_with(monkeypatch, capsys, denied, "train", str(recipe), "--device", "cpu")
    assert code == 2 and len(lines) == 1, lines
    assert lines[0].startswith("error: cannot use ") and str(tmp_path / "runs" / "tiny" / "x") in lines[0]

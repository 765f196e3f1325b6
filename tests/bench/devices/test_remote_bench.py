"""Remote commands, device checks and a full remote bench against a real sshd on 127.0.0.1.

The "device" is this machine reached through OpenSSH: real ssh client, real sshd, real upload, the real
cidpipe_runtime and real onnxruntime sessions on both sides.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from cidpipe.bench.config import BenchConfig
from cidpipe.bench.devices import SshTarget, check_device, list_devices, load_inventory, run_remote_bench
from cidpipe.bench.devices.remote import RUNTIME_PACKAGE, runtime_args

pytestmark = pytest.mark.ssh

TINY_BENCH = BenchConfig(batch_sizes=[1, 4], warmup_runs=1, warmup_seconds=0.0, runs=3, min_seconds=0.0,
                         threads=1)


def remote_listing(sshd, path: str) -> list[str]:
    with SshTarget(sshd.device()) as target:
        completed = target.run(["sh", "-c", 'ls -A -- "$1" 2>/dev/null || true', "sh", path])
    return completed.stdout.split()


@pytest.fixture(scope="module")
def tiny_artifact(tmp_path_factory: pytest.TempPathFactory):
    """A 3-class linear classifier on 1x4x4 inputs as ONNX, and a 40-sample eval npz."""
    root = tmp_path_factory.mktemp("artifact")
    rng = np.random.default_rng(0)
    weight = rng.standard_normal((16, 3)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["input"], ["flat"]),
         helper.make_node("MatMul", ["flat", "w"], ["logits"])],
        "tiny", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 1, 4, 4])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 3])],
        initializer=[helper.make_tensor("w", TensorProto.FLOAT, weight.shape, weight.flatten())],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    model_path = root / "tiny model.onnx"  # a space: proves remote quoting
    onnx.save(model, model_path)
    x = rng.standard_normal((40, 1, 4, 4)).astype(np.float32)
    logits = x.reshape(40, 16) @ weight
    y = logits.argmax(1).astype(np.int64)
    y[::4] = (y[::4] + 1) % 3  # a quarter wrong: accuracy is neither 0 nor 100
    npz_path = root / "eval.npz"
    np.savez(npz_path, x=x, y=y, ref_pred=logits.argmax(1).astype(np.int64))
    return model_path, npz_path


def test_remote_command_round_trips_arguments_verbatim(sshd):
    tricky = ["a b", "$HOME", "it's", "; rm -rf /", "*"]
    with SshTarget(sshd.device()) as target:
        echo_argv = "import sys, json; print(json.dumps(sys.argv[1:]))"
        completed = target.run([sys.executable, "-c", echo_argv, *tricky], check=True)
    assert json.loads(completed.stdout) == tricky


def test_check_device_reports_python_and_onnxruntime(sshd):
    report = check_device(sshd.device())
    import onnxruntime

    assert report["reachable"] is True
    assert report["python"]["version"] == sys.version.split()[0]
    assert report["backends"]["onnxruntime"]["available"] is True
    assert report["backends"]["onnxruntime"]["version"] == onnxruntime.__version__
    assert "CPUExecutionProvider" in report["backends"]["onnxruntime"]["providers"]
    assert report["backends"]["tensorrt"]["available"] is False
    assert report["problems"] == []


def test_remote_bench_matches_local_runtime_and_leaves_no_debris(sshd, tiny_artifact):
    model_path, npz_path = tiny_artifact
    device = sshd.device()
    result = run_remote_bench(device, model_path, npz_path, "onnxruntime", TINY_BENCH)
    local = subprocess.run(
        [sys.executable, "-m", RUNTIME_PACKAGE, *runtime_args(str(model_path), str(npz_path), "onnxruntime",
                                                              TINY_BENCH)],
        capture_output=True, text=True, check=True,
    )
    assert result["accuracy"] == json.loads(local.stdout)["accuracy"]
    assert result["accuracy"]["top1"] == pytest.approx(75.0)  # y was built with every 4th label wrong
    assert [entry["batch_size"] for entry in result["latency"]] == [1, 4]
    assert result["remote"]["device"] == "loopback"
    assert result["model"] == model_path.name
    assert remote_listing(sshd, device.workdir) == []


def test_local_device_runs_the_same_runtime(tiny_artifact):
    model_path, npz_path = tiny_artifact
    result = run_remote_bench(load_inventory(None).get_device("local"), model_path, npz_path, "onnxruntime",
                              TINY_BENCH.model_copy(update={"batch_sizes": [2]}))
    assert result["accuracy"]["top1"] == pytest.approx(75.0)
    assert result["remote"]["kind"] == "local"


def test_list_devices_reads_the_inventory(tmp_path, sshd):
    inventory_path = tmp_path / "devices.yaml"
    inventory_path.write_text(
        f"devices:\n  loop:\n    host: 127.0.0.1\n    port: {sshd.port}\n    identity_file: keys/id\n"
        "  lab:\n    kind: jetson\n    host: 10.0.0.9\n    insecure_accept_host_key: true\n"
    )
    rows = {row["name"]: row for row in list_devices(load_inventory(inventory_path))}
    assert set(rows) == {"local", "loop", "lab"}
    assert rows["loop"]["address"] == f"127.0.0.1:{sshd.port}"
    assert rows["loop"]["host_key_checking"] == "strict"
    assert rows["lab"]["host_key_checking"].startswith("accept-new")
    assert load_inventory(inventory_path).get_device("loop").identity_file == tmp_path / "keys" / "id"

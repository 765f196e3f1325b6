"""A TensorRT INT8 graph benched on an ONNX Runtime CPU session gets the accuracy of its exact Q/DQ
arithmetic (what TensorRT computes), locally and through the device runtime; a CPU INT8 graph keeps the
accuracy of the kernels that run it.

Real parts: ORT's quantizer, ORT sessions, bench_local and ``python -m cidpipe_runtime`` as a subprocess.
The one constructed model (tests/fixtures/saturating.py) saturates ORT's fused kernels on x86 CPUs without
VNNI; the assertions that need that effect run only where it exists, the rest run everywhere.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from cidpipe_runtime.ort_backend import EXACT_QDQ, OrtBackend, exact_qdq_twin

from cidpipe.bench.config import BenchConfig
from cidpipe.bench.local import bench_local
from cidpipe.bench.result import ArtifactSpec
from cidpipe.bench.table import result_notes
from cidpipe.export.ort_run import make_session, run_onnx, top1_percent
from cidpipe.machine import x86_without_vnni
from cidpipe.quantize.config import QuantizeConfig
from cidpipe.quantize.int8 import quantize_static_int8
from tests.bench.test_runtime_cli import FAST as CLI_FAST
from tests.bench.test_runtime_cli import run_cli
from tests.fixtures.saturating import saturating_inputs, saturating_model

FAST = {"warmup_runs": 1, "warmup_seconds": 0.0, "runs": 3, "min_seconds": 0.0, "threads": 1}


@pytest.fixture(scope="module")
def int8_graphs(tmp_path_factory):
    """{"cpu": path, "trt": path} INT8 graphs of the saturating model, with their eval data."""
    tmp = tmp_path_factory.mktemp("exact")
    x, y = saturating_inputs()
    model = saturating_model(tmp / "sat.onnx")
    graphs = {}
    for target in ("cpu", "trt"):
        graphs[target] = tmp / f"sat.{target}.int8.onnx"
        quantize_static_int8(model, graphs[target], x, QuantizeConfig(target=target, float_stem=False))
    np.savez(tmp / "eval.npz", x=x, y=y, ref_pred=y)
    return graphs, x, y, tmp / "eval.npz"


def _top1(path, x, y, optimization):
    return top1_percent(run_onnx(make_session(path, optimization=optimization), x), y)


def test_only_a_trt_graph_on_a_cpu_session_gets_an_exact_twin(int8_graphs):
    graphs, _x, _y, _npz = int8_graphs
    trt, cpu = OrtBackend(str(graphs["trt"])), OrtBackend(str(graphs["cpu"]))
    assert (trt.quantization_target, cpu.quantization_target) == ("trt", "cpu")
    twin = exact_qdq_twin(trt)
    assert twin is not None and twin.optimization == "disabled" and twin.threads == trt.threads
    assert exact_qdq_twin(cpu) is None  # judged by the kernels this CPU runs it with
    assert exact_qdq_twin(twin) is None  # already exact
    assert exact_qdq_twin(OrtBackend(str(graphs["trt"].parent / "sat.onnx"))) is None  # FP32, no metadata


def test_bench_local_judges_the_trt_graph_exactly_and_says_so(int8_graphs):
    graphs, x, y, _npz = int8_graphs
    specs = [ArtifactSpec("sat.trt.int8.onnx", "onnx-int8", path=graphs["trt"]),
             ArtifactSpec("sat.cpu.int8.onnx", "onnx-int8", path=graphs["cpu"])]  # fmt: skip
    rows = bench_local(specs, x, y, y, BenchConfig(backends=["onnxruntime"], batch_sizes=[1, 4], **FAST))
    trt_rows, cpu_rows = rows[:2], rows[2:]
    assert {r.top1 for r in trt_rows} == {_top1(graphs["trt"], x, y, "disabled")}
    assert {r.top1 for r in cpu_rows} == {_top1(graphs["cpu"], x, y, "all")}
    assert all(r.extra["accuracy_arithmetic"] == EXACT_QDQ for r in trt_rows)
    assert all("accuracy_arithmetic" not in r.extra for r in cpu_rows)
    assert all(r.latency and r.latency["runs"] >= 3 for r in rows)
    notes = [note for note in result_notes(rows, 10.0) if EXACT_QDQ in note]
    assert len(notes) == 1 and notes[0].startswith("sat.trt.int8.onnx [local]")  # once, not per batch


def test_device_runtime_reports_the_exact_accuracy(int8_graphs):
    graphs, x, y, npz = int8_graphs
    proc = run_cli("--model", str(graphs["trt"]), "--data", str(npz), "--backend", "onnxruntime", *CLI_FAST)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    accuracy = json.loads(proc.stdout)["accuracy"]
    assert accuracy["arithmetic"] == EXACT_QDQ
    assert accuracy["top1"] == _top1(graphs["trt"], x, y, "disabled")


@pytest.mark.skipif(not x86_without_vnni(), reason="saturation exists on x86 CPUs without VNNI")
def test_on_a_saturating_cpu_the_bench_no_longer_shows_the_kernel_loss(int8_graphs):
    graphs, x, y, _npz = int8_graphs
    optimised = _top1(graphs["trt"], x, y, "all")
    if optimised > 50.0:
        pytest.skip(f"this CPU's S8S8 kernels did not saturate on the constructed model ({optimised:.0f} %)")
    [row] = bench_local([ArtifactSpec("trt", "onnx-int8", path=graphs["trt"])], x, y, y,
                        BenchConfig(backends=["onnxruntime"], batch_sizes=[1], **FAST))  # fmt: skip
    assert row.top1 == 100.0 and row.status == "pass"  # was the optimised session's top-1, below 50 %

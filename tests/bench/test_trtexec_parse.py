"""trtexec logs from public issue threads (tests/fixtures/trtexec, provenance in each first line)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cidpipe.bench.trtexec_parse import parse_trtexec, require_performance
from cidpipe.errors import DeviceError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "trtexec"


def parse(name: str):
    return parse_trtexec((FIXTURES / name).read_text())


def test_every_fixture_names_its_source():
    for path in FIXTURES.glob("*.txt"):
        assert path.read_text().startswith("# source: "), path


def test_tensorrt_8_4_one_line_summary_jetson_xavier():
    report = parse("trt8.4_xavier_agx.txt")
    assert report.tensorrt_version == "8.4.0"  # from "[TensorRT v8400]"
    assert report.throughput_qps == 41087.7
    assert report.stats["latency"] == {
        "min_ms": 0.387207,
        "max_ms": 0.447357,
        "mean_ms": 0.402238,
        "median_ms": 0.401947,
        "p99_ms": 0.420288,
    }
    assert report.stats["gpu_compute_time"]["median_ms"] == 0.388443
    assert report.stats["h2d_latency"]["p99_ms"] == 0.0272217
    assert report.stats["d2h_latency"]["min_ms"] == 0.00195312
    assert report.stats["enqueue_time"]["mean_ms"] == 0.090497
    assert report.total_host_walltime_s == 3.00119 and report.total_gpu_compute_time_s == 2.99202


def test_percentile_90_95_99_format():
    report = parse("trt_percentiles_4177.txt")
    assert report.throughput_qps == 130.298
    assert report.stats["latency"] == {
        "min_ms": 5.38672,
        "max_ms": 13.3664,
        "mean_ms": 7.60628,
        "median_ms": 7.16092,
        "p90_ms": 10.2996,
        "p95_ms": 10.8698,
        "p99_ms": 12.9675,
    }
    assert report.stats["gpu_compute_time"]["p95_ms"] == 10.8175
    assert report.stats["d2h_latency"]["p90_ms"] == 0.0254517
    assert report.tensorrt_version is None


def test_garbled_stat_is_left_out_not_misread():
    report = parse("trt8.5.2_xavier_agx_garbled.txt")
    assert report.stats["latency"]["p95_ms"] == 0.393066
    enqueue = report.stats["enqueue_time"]
    assert enqueue["p95_ms"] == 0.22229 and "p99_ms" not in enqueue  # the log says "= 0.2551s"


def test_tensorrt_8_6_device_block_and_partial_summary():
    report = parse("trt8.6.3_rtx2080.txt")
    assert (report.tensorrt_version, report.device_name, report.compute_capability) == (
        "8.6.3",
        "NVIDIA GeForce RTX 2080",
        "7.5",
    )
    assert report.throughput_qps is None  # not in the excerpt
    assert report.stats["gpu_compute_time"]["p90_ms"] == 197.626
    assert report.total_gpu_compute_time_s == 3.55112


def test_tensorrt_10_orin_device_and_banner_versions():
    orin = parse("trt10.16.2_orin_device.txt")
    assert (orin.tensorrt_version, orin.device_name, orin.compute_capability) == ("10.16.2", "Orin", "8.7")
    assert parse("trt10.2_header.txt").tensorrt_version == "10.2.0"  # from "[TensorRT v100200]"


def test_tensorrt_7_end_to_end_line():
    report = parse("trt7x_gtx1080ti_e2e.txt")
    assert report.throughput_qps == 1.57184
    assert report.stats["end_to_end_latency"]["median_ms"] == 636.003
    assert report.stats["latency"]["p99_ms"] == 638.123


def test_legacy_sectioned_summary():
    report = parse("trt7_legacy_sections.txt")
    assert report.stats["latency"] == {
        "min_ms": 1.64058,
        "max_ms": 6.2915,
        "mean_ms": 1.66069,
        "median_ms": 1.65601,
        "p99_ms": 1.67065,
    }
    assert report.stats["end_to_end_latency"]["p99_ms"] == 3.03931
    assert "enqueue_time" not in report.stats  # the heading is the excerpt's last line


def test_require_performance():
    assert require_performance(parse("trt8.4_xavier_agx.txt")).throughput_qps == 41087.7
    with pytest.raises(DeviceError, match="no performance summary"):
        require_performance(parse("trt10.2_header.txt"))

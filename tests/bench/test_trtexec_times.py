"""trtexec's --exportTimes file lined up with its log, and refused when it does not fit.

The file format is the one trtexec's exportJSONTrace writes (one object per query, keys startEnqMs ..
endToEndMs); no TensorRT exists here, so the files are written by the tests in that format. The log lines
are in the wording of real trtexec logs ("Warmup completed 9 queries over 200 ms").
"""

from __future__ import annotations

import json

import pytest

from cidpipe.bench.trtexec_parse import parse_trtexec
from cidpipe.bench.trtexec_times import MAX_TIMES_BYTES, TimesUnusable, timed_latencies

LOG = """\
[10/11/2023-09:46:16] [I] Starting inference
[10/11/2023-09:46:19] [I] Warmup completed 2 queries over 200 ms
[10/11/2023-09:46:19] [I] Timing trace has 3 queries over 3.06444 s
[10/11/2023-09:46:19] [I] Throughput: 44.7 qps
"""


def trace(latencies: list[float]) -> bytes:
    entries, clock = [], 0.0
    for latency in latencies:
        entries.append({"startEnqMs": clock, "endEnqMs": clock + 0.1, "startH2dMs": clock,
                        "endH2dMs": clock + 0.05, "startComputeMs": clock + 0.05,
                        "endComputeMs": clock + latency - 0.05, "startD2hMs": clock + latency - 0.05,
                        "endD2hMs": clock + latency, "h2dMs": 0.05, "computeMs": latency - 0.1,
                        "d2hMs": 0.05, "latencyMs": latency, "endToEndMs": latency})  # fmt: skip
        clock += latency
    return json.dumps(entries).encode()


def test_the_log_counts_are_parsed():
    report = parse_trtexec(LOG)
    assert (report.warmup_queries, report.timed_queries, report.throughput_qps) == (2, 3, 44.7)


@pytest.mark.parametrize(
    ("latencies", "expected"),
    [([40.0, 30.0, 2.0, 2.5, 3.0], [2.0, 2.5, 3.0]),  # older trtexec: warm-up queries first
     ([2.0, 2.5, 3.0], [2.0, 2.5, 3.0])],  # newer trtexec: timed queries only
)  # fmt: skip
def test_timed_queries_are_taken_after_the_warm_up(latencies, expected):
    assert timed_latencies(trace(latencies), parse_trtexec(LOG)) == expected


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (trace([2.0, 2.5]), r"2 per-query entries for 2 warm-up \+ 3 timed"),
        (b'[{"latencyMs": NaN}, {"latencyMs": 1}, {"latencyMs": 1}]', "non-finite value NaN"),
        (b'[{"latencyMs": -1}, {"latencyMs": 1}, {"latencyMs": 1}]', "negative latencyMs"),
        (b'[{"latencyMs": "2"}, {"latencyMs": 1}, {"latencyMs": 1}]', "without a numeric latencyMs"),
        (b'[{"latencyMs": true}, {"latencyMs": 1}, {"latencyMs": 1}]', "without a numeric latencyMs"),
        (b"[1, 2, 3]", "without a numeric latencyMs"),
        (b'{"latencyMs": 1}', "not a non-empty JSON list"),
        (b"[]", "not a non-empty JSON list"),
        (b"\xff\xfe", "not JSON"),
        (b"[" * 100_000, "not JSON"),  # nesting past the parser's recursion limit
        (b" " * (MAX_TIMES_BYTES + 1), "larger than 64 MiB"),
    ],
)
def test_a_file_that_does_not_fit_is_refused_with_its_reason(data, reason):
    with pytest.raises(TimesUnusable, match=reason):
        timed_latencies(data, parse_trtexec(LOG))


def test_a_log_without_counts_cannot_be_lined_up():
    with pytest.raises(TimesUnusable, match="does not say how many queries were timed"):
        timed_latencies(trace([2.0]), parse_trtexec("[I] Throughput: 1 qps\n"))

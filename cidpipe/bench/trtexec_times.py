"""Per-query latencies from trtexec's ``--exportTimes`` file, so a board's TensorRT rows get the statistics
every other row has (median with its bootstrap interval, CoV, noisy flag) instead of trtexec's summary.

The file is a JSON list with one object per query (``startEnqMs`` ... ``endD2hMs``, ``h2dMs``,
``computeMs``, ``d2hMs``, ``latencyMs``, ``endToEndMs``); ``latencyMs`` (H2D + compute + D2H) is what the
summary's ``Latency`` line summarises. Older trtexec writes the warm-up queries too, newer versions only
the timed ones, so the entries are lined up with the log's counts ("Warmup completed W queries",
"Timing trace has M queries"): M entries are all timed, W + M start with the warm-up. Anything else is
refused rather than guessed at. The file is the device's word: its size is capped and every value checked.
"""

from __future__ import annotations

import json
import math

from cidpipe.bench.trtexec_parse import TrtexecReport

TIMES_FILE = "times.json"
MAX_TIMES_BYTES = 64 << 20  # ~300k queries; a longer trace is not worth its transfer
LATENCY_KEY = "latencyMs"


class TimesUnusable(ValueError):
    """The per-query file cannot be used; the message says why (the row keeps trtexec's summary)."""


def _reject_constant(name: str) -> float:
    raise TimesUnusable(f"non-finite value {name} in the per-query times")


def timed_latencies(data: bytes, report: TrtexecReport) -> list[float]:
    """``latencyMs`` of every timed query, in order; TimesUnusable when the file does not fit the log."""
    if len(data) > MAX_TIMES_BYTES:
        raise TimesUnusable(f"per-query times larger than {MAX_TIMES_BYTES >> 20} MiB")
    try:
        entries = json.loads(data.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise TimesUnusable(f"per-query times are not JSON ({err})") from err
    if not isinstance(entries, list) or not entries:
        raise TimesUnusable("per-query times are not a non-empty JSON list")
    timed, warmup = report.timed_queries, report.warmup_queries or 0
    if timed is None:
        raise TimesUnusable("the log does not say how many queries were timed")
    if len(entries) == timed:
        chosen = entries
    elif len(entries) == warmup + timed:
        chosen = entries[warmup:]
    else:
        raise TimesUnusable(
            f"{len(entries)} per-query entries for {warmup} warm-up + {timed} timed queries in the log"
        )
    latencies = []
    for entry in chosen:
        value = entry.get(LATENCY_KEY) if isinstance(entry, dict) else None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise TimesUnusable(f"a per-query entry without a numeric {LATENCY_KEY}")
        if value < 0:
            raise TimesUnusable(f"a negative {LATENCY_KEY} ({value})")
        latencies.append(float(value))
    if not latencies:
        raise TimesUnusable("no timed queries in the per-query times")
    return latencies

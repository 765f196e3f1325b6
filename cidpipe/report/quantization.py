"""The report's PTQ vs QAT table (issue 16): per INT8 variant, what post-training quantization measured,
what the quantization-aware fine-tune measured, and which of them made the shipped artifact."""

from __future__ import annotations

from typing import Any

from cidpipe.gate.rundir import RunData
from cidpipe.report.tables import DASH, Table, pct


def quantization_table(run: RunData) -> Table | None:
    """None unless some INT8 variant recorded a PTQ/QAT decision (``path``), i.e. QAT was enabled."""
    variants: dict[str, dict[str, Any]] = run.metrics("quantize").get("variants") or {}
    table = Table(
        "INT8: post-training vs quantization-aware (validation split)",
        ["Variant", "FP32 top-1 %", "PTQ top-1 %", "PTQ drop", "QAT top-1 %", "QAT drop", "QAT scales",
         "Shipped"],
    )
    for key, info in variants.items():
        if not info.get("path"):
            continue
        ptq = info.get("ptq") or {}
        qat = info.get("qat") or {}
        ran = bool(qat.get("ran"))
        table.rows.append([
            key, pct(info.get("top1_fp32")), pct(ptq.get("top1_int8")), pct(ptq.get("drop")),
            pct(qat.get("top1_int8")) if ran else DASH, pct(qat.get("drop")) if ran else DASH,
            str(qat.get("scales", DASH)) if ran else str(qat.get("reason", DASH)), str(info["path"]).upper(),
        ])  # fmt: skip
    return table if table.rows else None

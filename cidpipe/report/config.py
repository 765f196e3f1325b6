"""The recipe's ``report`` section."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from cidpipe.sections import Section


class ReportConfig(Section):
    enabled: bool = True
    html: bool = Field(True, description="also write a self-contained report.html")
    latency: Literal["p50", "p99"] = Field("p99", description="latency on the accuracy plot")

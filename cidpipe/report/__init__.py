"""Reports of finished runs: Markdown, a self-contained HTML page and PNG figures.

Names resolve on first use so that reading a recipe (cidpipe.report.config) does not import matplotlib.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ReportConfig": "cidpipe.report.config",
    "pareto_front": "cidpipe.report.plots",
    "write_report": "cidpipe.report.writer",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'cidpipe.report' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)

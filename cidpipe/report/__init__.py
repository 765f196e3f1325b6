"""Reports of finished runs: Markdown, a self-contained HTML page and PNG figures.

Names resolve on first use so that reading a recipe (cidpipe.report.config) does not import matplotlib.
"""

from __future__ import annotations

from cidpipe.lazy import lazy_exports

_EXPORTS = {
    "ReportConfig": "cidpipe.report.config",
    "pareto_front": "cidpipe.report.plots",
    "write_report": "cidpipe.report.writer",
}
__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)

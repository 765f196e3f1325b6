"""Reports of finished runs: Markdown, a self-contained HTML page and PNG figures."""

from cidpipe.report.config import ReportConfig
from cidpipe.report.plots import pareto_front
from cidpipe.report.writer import write_report

__all__ = ["ReportConfig", "pareto_front", "write_report"]

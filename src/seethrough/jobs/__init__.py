"""Jobs: whole runs that write results to an output folder (used by the CLI)."""

from .explain import ExplainResult, run_explain
from .report import ReportResult, run_report

__all__ = ["ExplainResult", "ReportResult", "run_explain", "run_report"]

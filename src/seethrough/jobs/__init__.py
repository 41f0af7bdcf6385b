"""Jobs: whole runs that write results to an output folder (used by the CLI)."""

from .explain import ExplainResult, run_explain

__all__ = ["ExplainResult", "run_explain"]

"""Jobs: whole runs that write results to an output folder (used by the CLI)."""

from .explain import ExplainResult, run_explain
from .output import OutputFolder

__all__ = ["ExplainResult", "OutputFolder", "run_explain"]

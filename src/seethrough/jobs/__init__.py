"""Jobs: whole runs that write results to an output folder (used by the CLI)."""

from .decompose import CircuitJobResult, ConceptsJobResult, run_circuit, run_concepts
from .explain import ExplainResult, run_explain
from .report import ReportResult, run_report
from .robust import AttackJobResult, EvaluateJobResult, run_attack, run_evaluate

__all__ = [
    "AttackJobResult",
    "CircuitJobResult",
    "ConceptsJobResult",
    "EvaluateJobResult",
    "ExplainResult",
    "ReportResult",
    "run_attack",
    "run_circuit",
    "run_concepts",
    "run_evaluate",
    "run_explain",
    "run_report",
]

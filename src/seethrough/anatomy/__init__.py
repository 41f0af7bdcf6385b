"""What does each module do? Ablation with per-class effects, gradient analysis, linear
probes on surrogate tasks, concept tests (TCAV), and a card per module joining them."""

from __future__ import annotations

from .ablation import (
    Ablation,
    AblationResult,
    Evaluation,
    ablate,
    ablate_weights,
    evaluate,
    reference_statistics,
)
from .blocks import block_outputs
from .card import Anatomy, ModuleCard, anatomy
from .cav import concept_activation_vector
from .gradients import GradientAnalysis, ModuleGradients, gradient_analysis
from .probes import (
    Probe,
    ProbeTable,
    SourceActivations,
    collect_activations,
    fit_probe,
    paired_p_value,
    probe_layers,
    random_copy,
    source_activations,
    surrogate_labels,
)
from .tcav import TcavResult, tcav, tcav_concepts

__all__ = [
    "Ablation",
    "AblationResult",
    "Anatomy",
    "Evaluation",
    "GradientAnalysis",
    "ModuleCard",
    "ModuleGradients",
    "Probe",
    "ProbeTable",
    "SourceActivations",
    "TcavResult",
    "ablate",
    "ablate_weights",
    "anatomy",
    "block_outputs",
    "collect_activations",
    "concept_activation_vector",
    "evaluate",
    "fit_probe",
    "gradient_analysis",
    "paired_p_value",
    "probe_layers",
    "random_copy",
    "reference_statistics",
    "source_activations",
    "surrogate_labels",
    "tcav",
    "tcav_concepts",
]

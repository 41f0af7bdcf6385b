"""Robustness and interpretability: adversarial attacks, robust evaluation with checks for
gradient masking, and (next) adversarially trained and gradient-regularised models."""

from __future__ import annotations

from .attacks import EPS_SPACES, NORMS, AttackResult, AttackSettings, fgsm, pgd
from .compare import (
    CompareSettings,
    Estimate,
    MethodSummary,
    ModelSummary,
    RobustnessComparison,
    alignment,
    compare,
)
from .evaluate import (
    CHECKS,
    EvaluationSettings,
    GradientMaskingWarning,
    MaskingCheck,
    RobustnessReport,
    evaluate,
)
from .fragility import FRAGILITY_METHODS, FragilityResult, FragilitySettings, fragility

__all__: list[str] = [
    "CHECKS",
    "EPS_SPACES",
    "NORMS",
    "AttackResult",
    "AttackSettings",
    "CompareSettings",
    "Estimate",
    "MethodSummary",
    "ModelSummary",
    "RobustnessComparison",
    "alignment",
    "compare",
    "EvaluationSettings",
    "GradientMaskingWarning",
    "MaskingCheck",
    "RobustnessReport",
    "evaluate",
    "fgsm",
    "pgd",
    "FRAGILITY_METHODS",
    "FragilityResult",
    "FragilitySettings",
    "fragility",
]

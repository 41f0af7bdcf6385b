"""Robustness and interpretability: adversarial attacks, robust evaluation with checks for
gradient masking, and (next) adversarially trained and gradient-regularised models."""

from __future__ import annotations

from .attacks import EPS_SPACES, NORMS, AttackResult, AttackSettings, fgsm, pgd
from .evaluate import (
    CHECKS,
    EvaluationSettings,
    GradientMaskingWarning,
    MaskingCheck,
    RobustnessReport,
    evaluate,
)

__all__: list[str] = [
    "CHECKS",
    "EPS_SPACES",
    "NORMS",
    "AttackResult",
    "AttackSettings",
    "EvaluationSettings",
    "GradientMaskingWarning",
    "MaskingCheck",
    "RobustnessReport",
    "evaluate",
    "fgsm",
    "pgd",
]

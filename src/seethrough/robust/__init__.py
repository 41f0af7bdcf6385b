"""Robustness and interpretability: adversarial attacks, robust evaluation with checks for
gradient masking, and (next) adversarially trained and gradient-regularised models."""

from __future__ import annotations

__all__: list[str] = []

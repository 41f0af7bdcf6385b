"""Randomization steps: the network's blocks in execution order (shared with
:mod:`seethrough.anatomy`, so they live in :mod:`seethrough.core.steps`)."""

from __future__ import annotations

from ..core.steps import GRANULARITIES, RandomizationStep, randomization_steps

__all__ = ["GRANULARITIES", "RandomizationStep", "randomization_steps"]

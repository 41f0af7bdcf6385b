"""Gradient methods: vanilla gradient and gradient × input."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from ..core.targets import Target
from .base import Attribution, Method, Run, register

__all__ = ["Gradient", "GradientXInput"]


@register
@dataclass(frozen=True, kw_only=True)
class Gradient(Method):
    """The gradient of the target score with respect to the input.

    Simonyan, Vedaldi & Zisserman (2014), "Deep Inside Convolutional Networks".
    Raw signed values, shaped like the inputs; heatmaps show their magnitude.
    """

    name = "gradient"
    display = "magnitude"

    def attribute_rows(self, run: Run, x: Tensor, target: Target) -> Attribution:
        return run.input_gradients(x, target)


@register
@dataclass(frozen=True, kw_only=True)
class GradientXInput(Method):
    """The gradient times the input, elementwise.

    Shrikumar et al. (2016), "Not Just a Black Box"; for a linear model the terms sum
    to the score minus its bias.
    """

    name = "gradient_x_input"

    def attribute_rows(self, run: Run, x: Tensor, target: Target) -> Attribution:
        grads = run.input_gradients(x, target)
        return Attribution(grads.values * x, grads.scores, grads.indices)

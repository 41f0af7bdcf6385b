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

    def clean_pass_needs(self, run: Run, x: Tensor) -> tuple[bool, str | None]:
        return True, None

    def attribute_rows(self, run: Run, x: Tensor, target: Target) -> Attribution:
        done = run.clean_pass(x, target, input_grad=True)
        assert done.input_grad is not None
        return Attribution(done.input_grad, done.scores, done.indices)


@register
@dataclass(frozen=True, kw_only=True)
class GradientXInput(Method):
    """The gradient times the input, elementwise.

    Shrikumar et al. (2016), "Not Just a Black Box"; for a linear model the terms sum
    to the score minus its bias.
    """

    name = "gradient_x_input"

    def clean_pass_needs(self, run: Run, x: Tensor) -> tuple[bool, str | None]:
        return True, None

    def attribute_rows(self, run: Run, x: Tensor, target: Target) -> Attribution:
        done = run.clean_pass(x, target, input_grad=True)
        assert done.input_grad is not None
        return Attribution(done.input_grad * x, done.scores, done.indices)

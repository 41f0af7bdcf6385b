"""Gradient methods: vanilla gradient and gradient × input."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor

from ..core.targets import Target
from .method import Attribution, Method, register
from .run import PassContext, PassNeeds

__all__ = ["Gradient", "GradientXInput"]


@dataclass(frozen=True, kw_only=True)
class _InputGradientMethod(Method):
    """A method read off the clean pass's input gradient: the gradient itself, or
    (``times_input``) the gradient times the input."""

    times_input: ClassVar[bool] = False

    def clean_pass_needs(self, ctx: PassContext, x: Tensor) -> PassNeeds:
        return PassNeeds(input_grad=True)

    def attribute_rows(self, ctx: PassContext, x: Tensor, target: Target) -> Attribution:
        clean = ctx.clean_pass(x, target, input_grad=True)
        assert clean.input_grad is not None
        values = clean.input_grad * x if self.times_input else clean.input_grad
        return Attribution(values, clean.scores, clean.indices, clean.predicted)


@register
@dataclass(frozen=True, kw_only=True)
class Gradient(_InputGradientMethod):
    """The gradient of the target score with respect to the input.

    Simonyan, Vedaldi & Zisserman (2014), "Deep Inside Convolutional Networks".
    Raw signed values, shaped like the inputs; heatmaps show their magnitude.
    """

    name = "gradient"
    display = "magnitude"


@register
@dataclass(frozen=True, kw_only=True)
class GradientXInput(_InputGradientMethod):
    """The gradient times the input, elementwise.

    Shrikumar et al. (2016), "Not Just a Black Box"; for a linear model the terms sum
    to the score minus its bias.
    """

    name = "gradient_x_input"
    times_input = True

"""Gradient methods: vanilla gradient and gradient × input."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from ..core.targets import Target
from .method import Attribution, Method, register
from .run import PassContext, PassNeeds

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

    def clean_pass_needs(self, ctx: PassContext, x: Tensor) -> PassNeeds:
        return PassNeeds(input_grad=True)

    def attribute_rows(self, ctx: PassContext, x: Tensor, target: Target) -> Attribution:
        clean = ctx.clean_pass(x, target, input_grad=True)
        assert clean.input_grad is not None
        return Attribution(clean.input_grad, clean.scores, clean.indices, clean.predicted)


@register
@dataclass(frozen=True, kw_only=True)
class GradientXInput(Method):
    """The gradient times the input, elementwise.

    Shrikumar et al. (2016), "Not Just a Black Box"; for a linear model the terms sum
    to the score minus its bias.
    """

    name = "gradient_x_input"

    def clean_pass_needs(self, ctx: PassContext, x: Tensor) -> PassNeeds:
        return PassNeeds(input_grad=True)

    def attribute_rows(self, ctx: PassContext, x: Tensor, target: Target) -> Attribution:
        clean = ctx.clean_pass(x, target, input_grad=True)
        assert clean.input_grad is not None
        return Attribution(clean.input_grad * x, clean.scores, clean.indices, clean.predicted)

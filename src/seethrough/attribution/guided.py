"""Guided backpropagation and deconvnet: gradients with rewritten rectifiers.

What counts as a rectifier (ReLU-like ops applied to activations, not clamps of the
model input) and the ``rectifiers`` override: see :mod:`seethrough.core.rules`.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import ClassVar

from torch import Tensor

from ..core.rules import RectifierRule, Rectifiers, RuleKind, check_rectifiers
from ..core.targets import Target
from .explanation import GuidedDetails, GuidedExplanation
from .method import Attribution, Method, register
from .run import PassContext

__all__ = ["Deconvnet", "GuidedBackprop", "rectified_gradients"]


def rectified_gradients(
    ctx: PassContext,
    x: Tensor,
    target: Target,
    kind: RuleKind,
    method: str,
    rectifiers: Rectifiers = "auto",
) -> Attribution:
    """Input gradients with the backward of every chosen rectifier rewritten by ``kind``.

    The details, per forward pass: ``rule_applications`` (calls rewritten),
    ``rewritten`` (op → count) and ``untouched_nonlinearities`` (op → count).
    Raises :class:`~seethrough.errors.RuleNotAppliedError` when the rule never fired.
    """
    rule = RectifierRule(kind, rectifiers, ctx.model)
    result = ctx.input_gradients(x, target, rule=rule, step=f"the {kind} backward pass")
    rule.check(method)
    passes = max(1, rule.passes)
    details = GuidedDetails(
        rule_applications=rule.fired // passes,
        rewritten=MappingProxyType(
            {op: count // passes for op, count in sorted(rule.rewritten.items())}
        ),
        untouched_nonlinearities=MappingProxyType(
            {name: count // passes for name, count in sorted(rule.others.items())}
        ),
    )
    return Attribution(result.values, result.scores, result.indices, details=details)


@dataclass(frozen=True, kw_only=True)
class _Rectified(Method):
    """A gradient whose backward pass rewrites the rectifiers that ``rectifiers`` picks."""

    rectifiers: Rectifiers = "auto"  # checked (and normalised) by check_rectifiers

    rule: ClassVar[RuleKind]
    display = "magnitude"
    result_type = GuidedExplanation

    def validate(self) -> None:
        object.__setattr__(self, "rectifiers", check_rectifiers(self.rectifiers))

    def attribute_rows(self, ctx: PassContext, x: Tensor, target: Target) -> Attribution:
        return rectified_gradients(ctx, x, target, self.rule, self.name, self.rectifiers)


@register
@dataclass(frozen=True, kw_only=True)
class GuidedBackprop(_Rectified):
    """Guided backpropagation (Springenberg et al., 2015, "Striving for Simplicity").

    At every rectifier the gradient is the op's local derivative times the positive
    part of the incoming gradient. Reaches ``nn.ReLU``, ``nn.ReLU6``, ``F.relu``,
    ``torch.relu``, in-place and reused activations, ``LeakyReLU``, ``PReLU`` and
    ``clamp(min=0)``; raises if the model has none (where Captum returns the plain
    gradient without a word). The result's ``rewritten`` says which ops were rewritten.

    Parameters
    ----------
    rectifiers : "auto", "all", collection of str, or callable
        Which ReLU-like calls to rewrite. ``"auto"`` (default): those applied to an
        activation — a clamp of the model input (``net(x.clamp(0, 1))``) keeps its
        plain gradient. ``"all"``: every one. Module names: those called by these
        modules or their submodules. A function ``RectifierCall -> bool``: those it
        returns True for. See :mod:`seethrough.core.rules`.

    Notes
    -----
    Deviations from the paper, which defines the rule for the ReLUs of the network:
    other ReLU-like ops use their own local derivative (ReLU6: 0 above 6; leaky ReLU,
    PReLU: the negative slope) times the positive part of the incoming gradient; and
    with ``"auto"`` a ReLU-like op on the model input is preprocessing, not a unit of
    the network, and keeps its ordinary gradient.
    """

    name = "guided_backprop"
    rule = "guided"


@register
@dataclass(frozen=True, kw_only=True)
class Deconvnet(_Rectified):
    """Deconvnet (Zeiler & Fergus, 2014): rectifiers pass the positive part of the
    incoming gradient, whatever their forward input.

    ``rectifiers`` and the result's ``rewritten``: as for :class:`GuidedBackprop`.
    """

    name = "deconvnet"
    rule = "deconvnet"

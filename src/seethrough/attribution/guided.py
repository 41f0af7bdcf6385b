"""Guided backpropagation and deconvnet: gradients with rewritten rectifiers."""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

from torch import Tensor

from ..core.rules import RectifierRule, RuleKind
from ..core.targets import Target
from .base import Attribution, Method, Run, register
from .explanation import GuidedExplanation

__all__ = ["Deconvnet", "GuidedBackprop", "rectified_gradients"]


def rectified_gradients(
    run: Run, x: Tensor, target: Target, kind: RuleKind, method: str
) -> Attribution:
    """Input gradients with every rectifier's backward rewritten by ``kind``.

    Raises :class:`~seethrough.errors.RuleNotAppliedError` when the rule never fired.
    """
    rule = RectifierRule(kind)
    result = run.input_gradients(x, target, rule=rule)
    rule.check(method)
    extra = {
        "rule_applications": rule.fired // max(1, rule.passes),
        "untouched_nonlinearities": MappingProxyType(
            {name: count // max(1, rule.passes) for name, count in rule.others.items()}
        ),
    }
    return Attribution(result.values, result.scores, result.indices, extra)


@register
@dataclass(frozen=True, kw_only=True)
class GuidedBackprop(Method):
    """Guided backpropagation (Springenberg et al., 2015, "Striving for Simplicity").

    At every rectifier the gradient is the op's local derivative times the positive
    part of the incoming gradient. Reaches ``nn.ReLU``, ``nn.ReLU6``, ``F.relu``,
    ``torch.relu``, in-place and reused activations, ``LeakyReLU``, ``PReLU`` and
    ``clamp(min=0)``; raises if the model has none (where Captum returns the plain
    gradient without a word).
    """

    name = "guided_backprop"
    display = "magnitude"
    result_type = GuidedExplanation

    def attribute_rows(self, run: Run, x: Tensor, target: Target) -> Attribution:
        return rectified_gradients(run, x, target, "guided", self.name)


@register
@dataclass(frozen=True, kw_only=True)
class Deconvnet(Method):
    """Deconvnet (Zeiler & Fergus, 2014): rectifiers pass the positive part of the
    incoming gradient, whatever their forward input."""

    name = "deconvnet"
    display = "magnitude"
    result_type = GuidedExplanation

    def attribute_rows(self, run: Run, x: Tensor, target: Target) -> Attribution:
        return rectified_gradients(run, x, target, "deconvnet", self.name)

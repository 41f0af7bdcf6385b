"""Layer-wise relevance propagation: the ``"lrp"`` method.

The rules, composites and the engine are in :mod:`seethrough.core.relevance`; this file
is the method: it seeds the backward pass with the target score (relevance at the output
is ``onehot × logit``), checks that every op got a rule, and reports how well the
relevance adds up.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import torch
from torch import Tensor

from ..core.relevance import (
    COMPOSITES,
    Composite,
    RelevanceRule,
    composite_options,
    make_composite,
)
from ..core.targets import Target
from ..errors import (
    InvalidOptionError,
    boolean,
    instance_of,
    number,
    one_of,
    option,
    optional,
)
from .explanation import Details, Explanation
from .method import Attribution, Method, register
from .run import PassContext

__all__ = ["Lrp", "LrpDetails", "LrpExplanation", "box_bounds"]

_BOUND = optional(number() | instance_of(Tensor, "a tensor"))


@dataclass(frozen=True, eq=False, kw_only=True)
class LrpDetails(Details):
    """What LRP reports: see :class:`LrpExplanation`."""

    composite: str
    rules: Mapping[str, int]
    conservation: Tensor


@dataclass(frozen=True, eq=False, kw_only=True)
class LrpExplanation(Explanation, LrpDetails):
    """Layer-wise relevance propagation: the relevance of each input value.

    ``attributions`` are the input relevances for the target score (the relevance at the
    output is ``onehot × logit``). ``composite`` is the composite's name; ``rules`` the
    rules fired per forward pass, ``"kind: Rule" -> count`` (``{"conv: ZPlus": 52,
    "conv: Flat": 1, "batch_norm: merged": 49, "sum: Norm": 9, ...}``; read-only,
    ``dict(...)`` is JSON). ``conservation`` is ``Σ relevance / score`` per row ``(N,)``
    in float64 — 1 when every rule conserves (ε → 0 without biases); below 1 where biases
    and stabilisers absorb relevance. NaN for a score of exactly 0.
    """


def box_bounds(transform: Any) -> tuple[Tensor, Tensor]:
    """``(low, high)`` per channel ``(C,)``: the range of a preprocessed input, from a
    preprocessing with ``mean`` and ``std`` applied to pixels in [0, 1] —
    ``(0 − mean) / std`` and ``(1 − mean) / std``.

    Raises
    ------
    InvalidOptionError
        When ``transform`` has no ``mean`` and ``std``.
    """
    mean, std = getattr(transform, "mean", None), getattr(transform, "std", None)
    if mean is None or std is None:
        raise InvalidOptionError(
            "lrp: the box rule (composite 'epsilon_gamma_box') needs low and high, the "
            "smallest and largest value of the preprocessed input; pass them (e.g. "
            "low=(0 - mean) / std, high=(1 - mean) / std per channel), or pass a LoadedModel "
            "(st.load_model), whose preprocessing gives them"
        )
    m = torch.tensor(mean, dtype=torch.float64)
    s = torch.tensor(std, dtype=torch.float64)
    return (0.0 - m) / s, (1.0 - m) / s


@register
@dataclass(frozen=True, kw_only=True)
class Lrp(Method):
    """Layer-wise relevance propagation (Bach et al., 2015), with composites of rules
    (Montavon et al., 2019, "Layer-Wise Relevance Propagation: An Overview";
    Kohlbrenner et al., 2020) as in Zennit 0.4.6.

    Reaches every layer however the model writes it (modules, functional calls, in-place
    and reused activations, residual additions, global pooling) and raises
    :class:`~seethrough.errors.RuleNotAppliedError` for an op that carries activations
    without a rule (a product of two activations, ``layer_norm``), instead of returning
    the plain gradient there. See :mod:`seethrough.core.relevance` for what each op gets.

    Parameters
    ----------
    composite : str or Composite
        ``"epsilon_plus_flat"`` (default: flat on the first layer, z⁺ on convs, ε on
        linear layers), ``"epsilon_plus"``, ``"epsilon_gamma_box"``,
        ``"epsilon_alpha2_beta1"``, ``"alpha1_beta0"``, ``"epsilon"``, or a
        :class:`~seethrough.core.relevance.Composite` of your own.
    epsilon : float or None
        The ε of the composite's ε rules (default 1e-6).
    gamma : float or None
        The γ of ``"epsilon_gamma_box"`` (default 0.25).
    low, high : float, Tensor or None
        Bounds of the preprocessed input for the box rule of ``"epsilon_gamma_box"``
        (floats, or per-channel tensors ``(C,)``). Default: derived from a ``LoadedModel``'s
        preprocessing as ``(0 − mean) / std`` and ``(1 − mean) / std``; required otherwise.
    canonize : bool
        Fold batch norms into the conv/linear layer before them, on the fly (Zennit's
        ``MergeBatchNorm``; the model is not changed).

    Notes
    -----
    Deviations from Zennit: batch norms are folded exactly (Zennit leaves each merged batch
    norm computing ``x / √(1 + eps)``, which scales relevance by that much per batch norm);
    a batch norm that follows no layer gets the ε rule (Zennit: the gradient); the first
    layer is the one that sees the input (Zennit: the first in registration order);
    functional activations, residual additions and ``x.mean`` pooling get their rules
    (Zennit skips them silently). The result is multiplied by the score after a backward
    pass seeded with ``onehot``, which equals seeding with ``onehot × logit`` because every
    rule is linear in the relevance it receives.
    """

    composite: str | Composite = option(
        "epsilon_plus_flat", check=one_of(*COMPOSITES) | instance_of(Composite, "a Composite")
    )
    epsilon: float | None = option(None, check=optional(number(at_least=0)))
    gamma: float | None = option(None, check=optional(number(at_least=0)))
    low: float | Tensor | None = option(None, check=_BOUND)
    high: float | Tensor | None = option(None, check=_BOUND)
    canonize: bool = option(True, check=boolean())

    name = "lrp"
    display = "signed"
    result_type = LrpExplanation

    def validate(self) -> None:
        self._composite(0.0, 1.0)  # option names and values, before any pass

    def nonfinite_hint(self) -> str:
        return (
            "LRP's ε and z⁺ rules divide by each layer's output, which can be 0 (more often "
            "with epsilon=0 or a tiny epsilon, or rules with bias=False): raise epsilon "
            "(e.g. epsilon=1e-3) or keep the biases"
        )

    def _boxed(self) -> bool:
        return isinstance(self.composite, str) and "low" in composite_options(self.composite)

    def _composite(self, low: Any, high: Any) -> Composite:
        options: dict[str, Any] = {"epsilon": self.epsilon, "gamma": self.gamma}
        if self._boxed():
            options.update(
                low=self.low if self.low is not None else low,
                high=self.high if self.high is not None else high,
            )
        else:
            options.update(low=self.low, high=self.high)
        return make_composite(self.composite, **options)

    def attribute_rows(self, ctx: PassContext, x: Tensor, target: Target) -> Attribution:
        low: Any = self.low
        high: Any = self.high
        if self._boxed() and (low is None or high is None):
            derived = box_bounds(ctx.input_transform)
            low = derived[0] if low is None else low
            high = derived[1] if high is None else high
        composite = self._composite(low, high)
        rule = RelevanceRule(composite, ctx.model, canonize=self.canonize)
        step = "the LRP backward pass"
        result = ctx.input_gradients(x, target, rule=rule, step=step)
        rule.check(self.name)
        scores = result.scores
        relevance = result.values * scores.reshape(-1, *([1] * (x.dim() - 1)))
        total = relevance.detach().double().flatten(1).sum(dim=1)
        details = LrpDetails(
            composite=composite.name,
            rules=MappingProxyType(rule.counts()),
            conservation=total / scores.double(),
        )
        return Attribution(relevance, scores, result.indices, details=details)

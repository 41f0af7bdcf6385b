"""Layer-wise relevance propagation (LRP): rules as data, composites, and the engine.

LRP (Bach et al., 2015, "On Pixel-Wise Explanations for Non-Linear Classifier Decisions by
Layer-Wise Relevance Propagation") passes the target score backwards through the network,
layer by layer, with a rule per layer that says how the relevance ``R_j`` of each output
is shared among the inputs. The rules and how to choose them per layer follow Montavon et
al. (2019), "Layer-Wise Relevance Propagation: An Overview"; composites (a rule per layer
type and position) follow Kohlbrenner et al. (2020), "Towards Best Practice in Explaining
Neural Network Decisions with LRP", and Zennit 0.4.6 (Anders et al., 2021), whose rule
formulas, stabiliser and composites we reproduce (see ``docs/lrp.md``).

How the engine works
--------------------
:class:`RelevanceRule` is a :class:`~torch.overrides.TorchFunctionMode`: inside
``with rule: out = model(x)`` every call of the forward pass — module, functional, tensor
method, in-place, reused module — is seen, and each op that carries an activation is
replaced by an autograd function whose backward maps the relevance at its output to the
relevance at its input (Zennit's convention: the gradient that flows *is* the relevance).
The backward is linear in the relevance given at the output: seeded with
``onehot * logit`` (what :mod:`seethrough.attribution.lrp` does, by multiplying the
``onehot``-seeded result by the score), the input's gradient is the input relevance, and
``sum(relevance) = logit`` when every rule conserves (ε → 0, ``bias=False``).

Cost: each rule term is one convolution (or matrix product) with modified weights and one
transposed one, as in Zennit, but without running the op's own backward first: ε reuses the
forward output as its denominator (one transposed convolution), z⁺ on an input known to be
non-negative (after a ReLU, ReLU6, clamp or max pool) skips its ``x⁻`` term, and modified
weights (``w⁺``, merged batch norms) are computed once per engine.

What each op gets (the op's *kind* is what composites select on):

- ``"conv"`` (``F.conv1d/2d/3d``, grouped and depthwise included), ``"linear"``
  (``F.linear``) and ``"batch_norm"`` (a batch norm *not* merged into a preceding layer:
  a per-channel affine layer, by default with the ε rule) — the composite's rule
  (:class:`Epsilon`, :class:`Gamma`, :class:`AlphaBeta`, :class:`ZPlus`, :class:`ZBox`,
  :class:`Flat`, :class:`WSquare`, or :class:`Norm`). The *first* layer is every conv or
  linear layer whose input is the model input or a parameter-free function of it (padding,
  normalisation with buffers), and always the first conv/linear layer of the pass.
- ``"sum"``: the sum of two activations (``a + b``, ``a - b``, ``torch.add``, ``+=`` — the
  residual connection) and ``x.sum(dim)``; ``"avg_pool"``: ``avg_pool``,
  ``adaptive_avg_pool`` and ``x.mean(dim)`` (global pooling) — :class:`Norm` by default:
  the relevance is split in proportion to the summands (Zennit's ``ResNetCanonizer`` +
  ``Sum`` with the ``Norm`` rule, reached here however the addition is written).
- ``"activation"``: every elementwise op of one activation — ``relu`` in all its forms,
  ReLU6/hardtanh, clamps, leaky ReLU, the smooth ones (sigmoid, tanh, SiLU, GELU, …), and
  arithmetic with a constant or a parameter (``x * 0.5``, ``x + self.bias``,
  ``(x - mean) / std``) — :class:`Pass`: the relevance passes unchanged, as in Zennit.
- Max pooling (``max_pool``, ``adaptive_max_pool``, ``x.max(dim)``, ``x.amax``): winner
  takes all — the gradient (Zennit too). Shape ops (view, reshape, flatten, permute,
  transpose, contiguous, cat, stack, split, getitem, pad, dropout in eval mode, casts):
  the relevance passes unchanged (their gradient).
- Anything else that takes an activation and feeds the output — a product of two
  activations (a gate, squeeze-and-excitation), ``layer_norm``, ``softmax``,
  ``interpolate``, a batch norm with batch statistics, dropout in training mode — has no
  rule: the relevance through it would be the plain gradient, so :meth:`RelevanceRule.check`
  raises :class:`~seethrough.errors.RuleNotAppliedError` naming each such op and the module
  that called it. Ops on the model input alone (preprocessing inside the model) carry no
  activation and keep their gradient.

Canonization (``canonize=True``)
--------------------------------
A batch norm that directly follows a conv or linear layer — the next child of the same
parent module, in eval mode, with running statistics — is folded into it exactly as
Zennit's ``MergeBatchNorm`` does: ``w' = w·γ/σ``, ``b' = (b − μ)·γ/σ + β`` with
``σ = (running_var + eps) ** 0.5`` and the batch norm's own ``eps``. The fold happens on
the fly inside the mode: the conv's op is computed with the merged weights (the user's
parameters are never written), and the batch norm then passes its input through. Any other
use of the conv's output, or a batch norm that receives something else, raises instead of
giving a wrong fold (pass ``canonize=False`` for such models). A batch norm that follows no
conv/linear layer is an affine layer of its own, with the composite's ``"batch_norm"``
rule (ε by default).

Contract for hooks (what concept relevance relies on)
-----------------------------------------------------
Inside ``with RelevanceRule(composite, model): out = model(x)``:

1. A forward hook on a conv/linear module that has a folded batch norm sees the *merged*
   output — ``bn(conv(x))`` up to rounding — as that module's output; the batch norm
   module's output is a copy of it.
2. A tensor hook registered on a module's output tensor during the forward pass receives,
   in the backward pass, the relevance at that output (for the seed given: seed with
   ``onehot * logit``, or with ``onehot`` and multiply by the score). Relevance at a folded
   conv's output is the relevance of the canonized layer (conv and batch norm together).
3. A tensor hook may return a modified gradient (e.g. a channel mask): every rule below
   uses the relevance that arrives, so the masked relevance is propagated further down.
4. Call :meth:`RelevanceRule.check` *after* the backward pass (ops without a rule are
   recorded when relevance flows through them).

The user's model is never changed: no parameter, buffer, hook or mode is written.

Limitations: TorchScript modules do not call back into Python (no rule reaches inside
them; :meth:`RelevanceRule.check` then raises when no layer was reached). Transposed
convolutions have no rule (they raise). A conv with ``padding="same"`` and an even
kernel is refused (pad explicitly).
"""

from __future__ import annotations

import fnmatch
import inspect
import itertools
import math
import sys
import weakref
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import FrameType, MappingProxyType
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from ..errors import InvalidInputError, InvalidOptionError, RuleNotAppliedError, suggest
from .rules import _OTHER_NONLINEARITIES, _PARSERS, _results, _tensors

__all__ = [
    "COMPOSITES",
    "KINDS",
    "AlphaBeta",
    "Composite",
    "Epsilon",
    "Flat",
    "Gamma",
    "LayerCall",
    "Norm",
    "Pass",
    "RelevanceRule",
    "Rule",
    "Selector",
    "WSquare",
    "ZBox",
    "ZPlus",
    "composite_names",
    "composite_options",
    "make_composite",
]

KINDS: tuple[str, ...] = ("conv", "linear", "batch_norm", "avg_pool", "sum", "activation")
"""The op kinds a composite assigns rules to (plus the selector ``"first"``)."""

_LAYER_KINDS = frozenset({"conv", "linear", "batch_norm"})
_NORM_KINDS = frozenset({"avg_pool", "sum"})
STABILIZER = 1e-6
"""Zennit's default stabiliser: the ``ε`` of every rule's denominator but :class:`Epsilon`."""


def _stabilize(z: Tensor, epsilon: float) -> Tensor:
    """Zennit's ``stabilize``: ``z + ε`` where ``z ≥ 0``, ``z − ε`` where ``z < 0`` — the same
    numbers as ``z + ((z == 0) + sign(z)) * ε``, bit for bit, as ``(|z| + ε)`` with the sign
    of ``z`` (an order of magnitude faster than ``torch.where`` on the CPU). The one
    difference, ``−ε`` at ``z = −0.0``, changes no relevance: a sum is ``−0.0`` only when
    every term is a zero, so every share ``z_ij / z_j`` it divides is zero too."""
    return z.abs().add_(epsilon).copysign_(z)


def _share(relevance: Tensor, z: Tensor, epsilon: float, *, positive: bool = False) -> Tensor:
    """``relevance / stab(z)`` as a new tensor. ``positive``: ``z ≥ 0`` by construction (z⁺,
    flat, w²), so ``stab(z) = z + ε``, computed in ``z``'s memory (``z`` must then be a fresh
    tensor of the rule's own)."""
    denominator = z.add_(epsilon) if positive else _stabilize(z, epsilon)
    return torch.div(relevance, denominator, out=denominator)


# ---------------------------------------------------------------------------- rules


def _finite(value: Any, name: str, at_least: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidOptionError(f"{name} must be a finite number, got {value!r}")
    if value < at_least:
        raise InvalidOptionError(f"{name} must be ≥ {at_least:g}, got {value!r}")
    return float(value)


def _flag(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidOptionError(f"{name} must be True or False, got {value!r}")
    return value


@dataclass(frozen=True)
class Rule:
    """An LRP rule: how the relevance at an op's output is shared among its inputs.

    Rules are data (frozen dataclasses); the engine applies them. ``kinds`` lists the op
    kinds a rule can apply to (see :data:`KINDS`).
    """

    kinds: ClassVar[frozenset[str]] = _LAYER_KINDS

    @property
    def name(self) -> str:
        """The rule's class name (``"Epsilon"``), as counted in the results."""
        return type(self).__name__


@dataclass(frozen=True)
class Epsilon(Rule):
    """LRP-ε (Bach et al., 2015; Montavon et al., 2019, eq. 5):
    ``R_i = Σ_j x_i w_ij / (z_j ± ε) · R_j`` with ``z_j = Σ_i x_i w_ij + b_j``.

    Parameters
    ----------
    epsilon : float
        The stabiliser, added with the sign of ``z_j`` (``+ε`` at ``z_j = 0``), as Zennit.
        ``epsilon=0`` is LRP-0.
    bias : bool
        Whether the bias is part of ``z_j`` (it then absorbs its share of relevance).
        ``False`` is Zennit 0.5's ``zero_params="bias"``: with ε → 0 the rule conserves
        exactly at every unit whose weighted inputs ``Σ_i x_i w_ij`` are not zero (a unit
        driven by its bias alone keeps the relevance it received; in a network without
        biases there are none). On ``"sum"``/``"avg_pool"`` ops the rule is :class:`Norm`
        with this ε.
    """

    kinds: ClassVar[frozenset[str]] = _LAYER_KINDS | _NORM_KINDS
    epsilon: float = 1e-6
    bias: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "epsilon", _finite(self.epsilon, "Epsilon.epsilon"))
        _flag(self.bias, "Epsilon.bias")


@dataclass(frozen=True)
class Gamma(Rule):
    """LRP-γ (Montavon et al., 2019, eq. 6): the weights ``w + γ·w⁺`` (and the bias
    ``b + γ·b⁺``) favour positive contributions; the denominator is stabilised with
    ``1e-6`` as in Zennit. Applied to inputs of any sign, as Zennit (the paper states it
    for ReLU inputs ``x ≥ 0``)."""

    gamma: float = 0.25
    bias: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "gamma", _finite(self.gamma, "Gamma.gamma"))
        _flag(self.bias, "Gamma.bias")


@dataclass(frozen=True)
class AlphaBeta(Rule):
    """LRP-αβ (Bach et al., 2015): ``α`` times the positive contributions
    (``x⁺w⁺ + x⁻w⁻ + b⁺``, normalised by their sum) minus ``β`` times the negative ones
    (``x⁺w⁻ + x⁻w⁺ + b⁻``). Requires ``α − β = 1`` and ``α, β ≥ 0`` (as Zennit).

    Deviation from Zennit: the defaults are ``α = 1, β = 0`` (Zennit's class defaults to
    ``α = 2, β = 1``; its composites name the values explicitly, and so do ours).
    """

    alpha: float = 1.0
    beta: float = 0.0
    bias: bool = True

    def __post_init__(self) -> None:
        alpha = _finite(self.alpha, "AlphaBeta.alpha")
        beta = _finite(self.beta, "AlphaBeta.beta")
        if abs(alpha - beta - 1.0) > 1e-12:
            raise InvalidOptionError(
                f"AlphaBeta needs alpha - beta = 1 to conserve relevance, got alpha={alpha:g}, "
                f"beta={beta:g} (common choices: alpha=1, beta=0; alpha=2, beta=1)"
            )
        object.__setattr__(self, "alpha", alpha)
        object.__setattr__(self, "beta", beta)
        _flag(self.bias, "AlphaBeta.bias")


@dataclass(frozen=True)
class ZPlus(Rule):
    """LRP-z⁺ (Montavon et al., 2017, "Explaining nonlinear classification decisions
    with deep Taylor decomposition"): only positive contributions ``x⁺w⁺ + x⁻w⁻`` (and
    ``b⁺``) share the relevance — :class:`AlphaBeta` with ``α = 1, β = 0``, as Zennit's
    ``ZPlus`` (which allows negative inputs, unlike the paper's ``x ≥ 0``)."""

    bias: bool = True

    def __post_init__(self) -> None:
        _flag(self.bias, "ZPlus.bias")


@dataclass(frozen=True, eq=False)
class ZBox(Rule):
    """LRP-z^B (Montavon et al., 2017) for the first layer, whose input lies in a box
    ``low ≤ x ≤ high``: ``z_j = Σ_i x_i w_ij − l_i w_ij⁺ − h_i w_ij⁻`` and
    ``R_i = Σ_j (x_i w_ij − l_i w_ij⁺ − h_i w_ij⁻) / z_j · R_j`` (the biases cancel, as in
    Zennit's form, which includes ``b − b⁺ − b⁻ = 0``).

    Parameters
    ----------
    low, high : float or Tensor
        The smallest and largest value of the layer's input — of the *preprocessed* image
        (e.g. ``(0 - mean) / std`` and ``(1 - mean) / std`` per channel). Tensors broadcast
        against one input row: ``(C,)`` or ``(1, C, 1, 1)`` per channel, or a full
        ``(1, C, H, W)``.
    """

    low: float | Tensor
    high: float | Tensor

    def __post_init__(self) -> None:
        for name in ("low", "high"):
            value = getattr(self, name)
            if isinstance(value, Tensor):
                if not value.dtype.is_floating_point or not bool(torch.isfinite(value).all()):
                    raise InvalidOptionError(f"ZBox.{name} must be finite floats, got {value!r}")
                object.__setattr__(self, name, value.detach().clone())
            else:
                object.__setattr__(self, name, _finite(value, f"ZBox.{name}", -math.inf))
        low, high = self.low, self.high
        below = torch.as_tensor(low) <= torch.as_tensor(high)
        if not bool(below.all()):
            raise InvalidOptionError("ZBox needs low ≤ high everywhere; the bounds are swapped")

    def __repr__(self) -> str:
        def show(v: float | Tensor) -> str:
            return f"tensor{tuple(v.shape)}" if isinstance(v, Tensor) else f"{v:g}"

        return f"ZBox(low={show(self.low)}, high={show(self.high)})"


@dataclass(frozen=True)
class Flat(Rule):
    """LRP-flat (Lapuschkin et al., 2019, "Unmasking Clever Hans predictors"): every input
    in the receptive field gets an equal share, ``R_i = Σ_j 1 / Σ_i' 1 · R_j`` (weights
    set to one, bias to zero, inputs to one, as Zennit; padding counts as no input)."""


@dataclass(frozen=True)
class WSquare(Rule):
    """LRP-w² (Montavon et al., 2017): ``R_i = Σ_j w_ij² / Σ_i' w_i'j² · R_j``.

    Parameters
    ----------
    bias : bool
        Include ``b_j²`` in the denominator, as Zennit's ``WSquare`` does (it then absorbs
        relevance); the paper has no bias term — pass ``False`` for it.
    """

    bias: bool = True

    def __post_init__(self) -> None:
        _flag(self.bias, "WSquare.bias")


@dataclass(frozen=True)
class Pass(Rule):
    """Pass the relevance through unchanged (elementwise ops: activations), as Zennit's
    ``Pass``."""

    kinds: ClassVar[frozenset[str]] = frozenset({"activation"})


@dataclass(frozen=True)
class Norm(Rule):
    """Split the relevance in proportion to each input's contribution to a
    parameter-free linear op (a sum, average pooling): ``R_i = x_i ∂z_j/∂x_i / z_j · R_j``
    with the stabiliser ``1e-6`` — Zennit's ``Norm``. On a layer it is
    ``Epsilon(1e-6, bias=True)``."""

    kinds: ClassVar[frozenset[str]] = _LAYER_KINDS | _NORM_KINDS


# ---------------------------------------------------------------------------- composites


@dataclass(frozen=True)
class LayerCall:
    """One op of the forward pass, as a composite's selectors see it.

    Attributes
    ----------
    kind : str
        One of :data:`KINDS`.
    op : str
        The function called (``"conv2d"``, ``"linear"``, ``"batch_norm"``, ``"add"``,
        ``"relu"``, ``"adaptive_avg_pool2d"``, …).
    module : str
        Dotted name of the module it belongs to: for layers the module that owns the weight,
        otherwise the innermost module whose ``forward`` made the call (``""``: the model).
    index : int
        Position among the conv/linear calls of the pass, from 0 (``-1`` for other ops).
    first : bool
        A conv/linear layer that sees the model input (see the module docstring).
    """

    kind: str
    op: str
    module: str
    index: int
    first: bool


Selector = str | Callable[[LayerCall], bool]
"""A kind of :data:`KINDS`, ``"first"``, a glob of module names (``"features.0"``,
``"layer4.*"``), or a predicate on a :class:`LayerCall`."""

_BASE_NAMES = ("activation", "sum", "avg_pool", "batch_norm")


@dataclass(frozen=True)
class Composite:
    """Rules by layer kind and position: the first ``(selector, rule)`` whose selector
    matches an op (and whose rule applies to its kind) gives the op's rule.

    Parameters
    ----------
    name : str
        Shown in results.
    rules : tuple of (Selector, Rule)
        In order of priority. Selectors: a kind of :data:`KINDS`, ``"first"`` (the first
        layer, see :class:`LayerCall`), a glob of module names, or a predicate on a
        :class:`LayerCall`. A glob or predicate that matches an op its rule cannot apply to
        (``Gamma`` on a ReLU) is skipped for that op.
    defaults : bool
        Append, at the lowest priority, Zennit's base map — ``activation → Pass``,
        ``sum → Norm``, ``avg_pool → Norm`` — and ``batch_norm → Epsilon()`` for batch
        norms not merged into a layer (Zennit leaves those to the gradient).

    Raises
    ------
    InvalidOptionError
        A selector of the wrong type, or a kind selector with a rule that cannot apply to
        that kind (``("activation", Gamma())``).
    """

    name: str
    rules: tuple[tuple[Selector, Rule], ...]
    defaults: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.name, str):
            raise InvalidOptionError(f"Composite.name must be a string, got {self.name!r}")
        rules: tuple[tuple[Selector, Rule], ...] = ()
        for pair in self.rules:
            if len(pair) != 2 or not isinstance(pair[1], Rule):
                raise InvalidOptionError(
                    f"Composite.rules takes (selector, rule) pairs with a Rule such as "
                    f"Epsilon(), got {pair!r}"
                )
            selector, rule = pair
            rules = (*rules, (selector, rule))
            if isinstance(selector, str):
                kinds = {"conv", "linear"} if selector == "first" else {selector} & set(KINDS)
                bad = [k for k in kinds if k not in rule.kinds]
                if bad:
                    raise InvalidOptionError(
                        f"composite {self.name!r}: {rule.name} cannot apply to {selector!r} "
                        f"ops; it applies to {', '.join(sorted(rule.kinds))}"
                    )
            elif not callable(selector):
                raise InvalidOptionError(
                    f"a selector is a kind ({', '.join(KINDS)}), 'first', a module-name glob "
                    f"or a function of a LayerCall, got {selector!r}"
                )
        if self.defaults:
            rules = (
                *rules,
                ("activation", Pass()),
                ("sum", Norm()),
                ("avg_pool", Norm()),
                ("batch_norm", Epsilon()),
            )
        object.__setattr__(self, "rules", rules)

    @property
    def globs(self) -> tuple[str, ...]:
        """The selectors that are module-name globs."""
        return tuple(
            s for s, _ in self.rules if isinstance(s, str) and s != "first" and s not in KINDS
        )


def _layers(
    name: str,
    first: Rule | None,
    conv: Rule,
    linear: Rule,
    epsilon: float,
    bias: bool,
) -> Composite:
    head: tuple[tuple[Selector, Rule], ...] = (("first", first),) if first is not None else ()
    return Composite(
        name,
        (
            *head,
            ("activation", Pass()),
            ("sum", Norm()),
            ("avg_pool", Norm()),
            ("batch_norm", Epsilon(epsilon, bias)),
            ("conv", conv),
            ("linear", linear),
        ),
        defaults=False,
    )


def _epsilon(*, epsilon: float = 1e-6, bias: bool = True) -> Composite:
    """ε for every layer, sum and pooling (no Zennit composite of this name): with
    ``epsilon → 0`` and ``bias=False`` every rule of it conserves."""
    rule = Epsilon(epsilon, bias)
    return Composite(
        "epsilon",
        (
            ("activation", Pass()),
            ("sum", rule),
            ("avg_pool", rule),
            ("batch_norm", rule),
            ("conv", rule),
            ("linear", rule),
        ),
        defaults=False,
    )


def _epsilon_plus(*, epsilon: float = 1e-6, bias: bool = True) -> Composite:
    """z⁺ for convs, ε for linear layers (Zennit's ``EpsilonPlus``)."""
    return _layers("epsilon_plus", None, ZPlus(bias), Epsilon(epsilon, bias), epsilon, bias)


def _epsilon_plus_flat(*, epsilon: float = 1e-6, bias: bool = True) -> Composite:
    """Flat for the first layer, z⁺ for convs, ε for linear layers (Zennit's
    ``EpsilonPlusFlat``)."""
    return _layers("epsilon_plus_flat", Flat(), ZPlus(bias), Epsilon(epsilon, bias), epsilon, bias)


def _epsilon_gamma_box(
    *,
    low: float | Tensor,
    high: float | Tensor,
    epsilon: float = 1e-6,
    gamma: float = 0.25,
    bias: bool = True,
) -> Composite:
    """z^B for the first layer, γ = 0.25 for convs, ε for linear layers (Zennit's
    ``EpsilonGammaBox``)."""
    return _layers(
        "epsilon_gamma_box",
        ZBox(low, high),
        Gamma(gamma, bias),
        Epsilon(epsilon, bias),
        epsilon,
        bias,
    )


def _epsilon_alpha2_beta1(*, epsilon: float = 1e-6, bias: bool = True) -> Composite:
    """α = 2, β = 1 for convs, ε for linear layers (Zennit's ``EpsilonAlpha2Beta1``)."""
    return _layers(
        "epsilon_alpha2_beta1",
        None,
        AlphaBeta(2.0, 1.0, bias),
        Epsilon(epsilon, bias),
        epsilon,
        bias,
    )


def _alpha1_beta0(*, epsilon: float = 1e-6, bias: bool = True) -> Composite:
    """α = 1, β = 0 for convs, ε for linear layers (no Zennit composite of this name; as
    ``epsilon_alpha2_beta1`` with α = 1, β = 0, which equals ``epsilon_plus``)."""
    return _layers(
        "alpha1_beta0", None, AlphaBeta(1.0, 0.0, bias), Epsilon(epsilon, bias), epsilon, bias
    )


COMPOSITES: Mapping[str, Callable[..., Composite]] = MappingProxyType(
    {
        "epsilon": _epsilon,
        "epsilon_plus": _epsilon_plus,
        "epsilon_plus_flat": _epsilon_plus_flat,
        "epsilon_gamma_box": _epsilon_gamma_box,
        "epsilon_alpha2_beta1": _epsilon_alpha2_beta1,
        "alpha1_beta0": _alpha1_beta0,
    }
)
"""Composite factories by name; each takes its options as keywords (``epsilon``, ``bias``;
``gamma``, ``low``, ``high`` where it has those rules). Layer maps and defaults match
Zennit 0.4.6's composites of the same names; every one also maps ``activation → Pass``,
``sum``/``avg_pool → Norm`` and ``batch_norm → Epsilon(epsilon, bias)``."""


def composite_names() -> tuple[str, ...]:
    """The names of :data:`COMPOSITES`."""
    return tuple(COMPOSITES)


def composite_options(name: str) -> tuple[str, ...]:
    """The keyword options the composite ``name`` takes."""
    return tuple(inspect.signature(COMPOSITES[name]).parameters)


def make_composite(composite: str | Composite, **options: Any) -> Composite:
    """The composite called ``composite`` with ``options``, or the :class:`Composite` given.

    Parameters
    ----------
    composite : str or Composite
        A name of :data:`COMPOSITES` or a composite of your own.
    **options
        ``epsilon``, ``bias`` for every named composite; ``gamma``, ``low``, ``high`` for
        ``"epsilon_gamma_box"`` (where ``low`` and ``high`` are required). ``None`` values
        are ignored.

    Raises
    ------
    InvalidOptionError
        An unknown name (with close matches), an option the composite has no rule for, a
        missing box bound, or options given with a :class:`Composite` (set them in its rules).
    """
    given = {k: v for k, v in options.items() if v is not None}
    if isinstance(composite, Composite):
        if given:
            raise InvalidOptionError(
                f"options {', '.join(sorted(given))} apply to named composites; set them in "
                f"the rules of your Composite {composite.name!r} instead"
            )
        return composite
    if not isinstance(composite, str) or composite not in COMPOSITES:
        raise InvalidOptionError(
            f"unknown composite {composite!r}{suggest(str(composite), COMPOSITES)} "
            f"(valid: {', '.join(COMPOSITES)}, or a Composite)"
        )
    accepted = composite_options(composite)
    for key in given:
        if key not in accepted:
            raise InvalidOptionError(
                f"composite {composite!r} has no rule that takes {key!r} (its options: "
                f"{', '.join(accepted)})"
            )
    missing = [k for k in ("low", "high") if k in accepted and k not in given]
    if missing:
        raise InvalidOptionError(
            f"composite {composite!r} uses the box rule on the first layer and needs "
            f"{' and '.join(missing)}: the smallest and largest value of the preprocessed "
            "input, e.g. (0 - mean) / std and (1 - mean) / std per channel (st.explain derives "
            "them from a LoadedModel's preprocessing)"
        )
    return COMPOSITES[composite](**given)


# ---------------------------------------------------------------------------- layers


def _ntuple(value: Any, n: int) -> list[int]:
    if isinstance(value, int):
        return [value] * n
    return [int(v) for v in value]


def _channel_view(t: Tensor, dims: int) -> Tensor:
    """A per-channel vector shaped to broadcast over ``(N, C, ...)`` with ``dims`` dims."""
    return t.reshape(1, -1, *([1] * (dims - 2))) if dims > 1 else t


class _Params:
    """A layer's weight and bias (detached, merged with a batch norm where folded) and the
    modified copies the rules need (``w+``, ``w-``, ``b+``, ``b-``, ``w2``, ``b2``,
    ``ones``), each computed once per engine and parameter version."""

    def __init__(self, weight: Tensor, bias: Tensor | None) -> None:
        self.weight, self.bias = weight, bias
        self._derived: dict[str, Tensor | None] = {}

    def get(self, name: str) -> Tensor | None:
        if name not in self._derived:
            self._derived[name] = self._make(name)
        return self._derived[name]

    def need(self, name: str) -> Tensor:
        t = self.get(name)
        assert t is not None
        return t

    def _make(self, name: str) -> Tensor | None:
        w, b = self.weight, self.bias
        if name == "w+":
            return w.clamp(min=0)
        if name == "w-":
            return w.clamp(max=0)
        if name == "w2":
            return w * w
        if name == "ones":
            return torch.ones_like(w)
        if b is None:
            return None
        if name == "b+":
            return b.clamp(min=0)
        if name == "b-":
            return b.clamp(max=0)
        if name == "b2":
            return b * b
        raise KeyError(name)


class _Layer:
    """A linear layer in matrix form: its parameters, ``forward(x, w, b)`` and the
    transposed map ``adjoint(s, x, w) = Wᵀ s`` (shaped like ``x``)."""

    kind: str

    def __init__(self, params: _Params) -> None:
        self.params = params

    def forward(self, x: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
        raise NotImplementedError

    def adjoint(self, s: Tensor, x: Tensor, w: Tensor) -> Tensor:
        raise NotImplementedError

    def bias_like(self, b: Tensor, out: Tensor) -> Tensor:
        """The bias shaped to broadcast against the output."""
        raise NotImplementedError


class _Conv(_Layer):
    kind = "conv"

    def __init__(
        self,
        params: _Params,
        stride: list[int],
        padding: list[int],
        dilation: list[int],
        groups: int,
    ) -> None:
        super().__init__(params)
        self.stride, self.padding, self.dilation, self.groups = stride, padding, dilation, groups
        self.zeros = [0] * len(stride)

    def forward(self, x: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
        return torch.convolution(
            x, w, b, self.stride, self.padding, self.dilation, False, self.zeros, self.groups
        )

    def adjoint(self, s: Tensor, x: Tensor, w: Tensor) -> Tensor:
        grads = torch.ops.aten.convolution_backward(
            s,
            x,
            w,
            None,
            self.stride,
            self.padding,
            self.dilation,
            False,
            self.zeros,
            self.groups,
            [True, False, False],
        )
        return grads[0]

    def bias_like(self, b: Tensor, out: Tensor) -> Tensor:
        return _channel_view(b, out.dim())


class _Dense(_Layer):
    kind = "linear"

    def forward(self, x: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
        return F.linear(x, w, b)

    def adjoint(self, s: Tensor, x: Tensor, w: Tensor) -> Tensor:
        return s.matmul(w)

    def bias_like(self, b: Tensor, out: Tensor) -> Tensor:
        return b


class _Diagonal(_Layer):
    """A batch norm as a per-channel affine layer ``x·a + c``."""

    kind = "batch_norm"

    def forward(self, x: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
        out = x * _channel_view(w, x.dim())
        return out if b is None else out + _channel_view(b, x.dim())

    def adjoint(self, s: Tensor, x: Tensor, w: Tensor) -> Tensor:
        return s * _channel_view(w, s.dim())

    def bias_like(self, b: Tensor, out: Tensor) -> Tensor:
        return _channel_view(b, out.dim())


def _merge(weight: Tensor, bias: Tensor | None, bn: Any) -> tuple[Tensor, Tensor]:
    """Zennit's ``MergeBatchNorm.merge_batch_norm``, without writing any parameter."""
    var = bn.running_var.detach()
    mean = bn.running_mean.detach()
    denominator = (var + bn.eps) ** 0.5
    gamma = bn.weight.detach() if bn.weight is not None else torch.ones_like(var)
    beta = bn.bias.detach() if bn.bias is not None else torch.zeros_like(var)
    scale = gamma / denominator
    index = (slice(None), *((None,) * (weight.dim() - 1)))
    original = bias if bias is not None else torch.zeros_like(mean)
    return weight * scale[index], (original - mean) * scale + beta


# ---------------------------------------------------------------------------- rule maths


@dataclass
class _Input:
    """The layer input's shape facts a rule needs: padded by ``F.pad`` (then ``pad`` is
    ``(source shape, pad)``), known non-negative."""

    nonneg: bool = False
    pad: tuple[torch.Size, tuple[int, ...]] | None = None

    def ones(self, x: Tensor) -> Tensor:
        """Ones where the layer sees the input, zeros where it sees padding."""
        if self.pad is None:
            return torch.ones_like(x)
        return F.pad(x.new_ones(self.pad[0]), list(self.pad[1]))

    def bound(self, value: float | Tensor, x: Tensor) -> Tensor:
        """A box bound at the input's shape (zero on padding)."""
        shape = x.shape if self.pad is None else self.pad[0]
        if isinstance(value, Tensor):
            v = value.to(device=x.device, dtype=x.dtype)
            if v.dim() == 1 and len(shape) > 2 and v.numel() == shape[1]:
                v = _channel_view(v, len(shape))
            try:
                full = torch.broadcast_to(v, shape)
            except RuntimeError:
                raise InvalidOptionError(
                    f"the box bound of shape {tuple(value.shape)} does not broadcast to the "
                    f"first layer's input {tuple(shape)}; give (C,), (1, C, 1, 1) or a float"
                ) from None
        else:
            full = x.new_full(shape, value)
        return full if self.pad is None else F.pad(full, list(self.pad[1]))


def _signed_term(
    layer: _Layer,
    x: Tensor,
    facts: _Input,
    relevance: Tensor,
    signs: str,
    bias: Tensor | None,
) -> Tensor:
    """``x⁺·W_posᵀ s + x⁻·W_negᵀ s`` with ``s = R / stab(x⁺ W_pos + x⁻ W_neg + bias)``, where
    ``signs`` is ``"+-"`` (W_pos = w⁺, W_neg = w⁻: the denominator is ≥ 0) or ``"-+"``; one
    conv and one transposed conv when the input is known to be non-negative."""
    params = layer.params
    w_pos = params.need("w" + signs[0])
    positive = signs == "+-"
    if facts.nonneg:
        s = _share(relevance, layer.forward(x, w_pos, bias), STABILIZER, positive=positive)
        return layer.adjoint(s, x, w_pos).mul_(x)
    w_neg = params.need("w" + signs[1])
    xp, xn = x.clamp(min=0), x.clamp(max=0)
    z = layer.forward(xp, w_pos, bias).add_(layer.forward(xn, w_neg, None))
    s = _share(relevance, z, STABILIZER, positive=positive)
    return layer.adjoint(s, x, w_pos).mul_(xp).add_(layer.adjoint(s, x, w_neg).mul_(xn))


def _layer_relevance(
    rule: Rule, layer: _Layer, x: Tensor, out: Tensor | None, facts: _Input, relevance: Tensor
) -> Tensor:
    """The relevance at a layer's input, in matrix form (Zennit's formulas)."""
    params = layer.params
    w, b = params.weight, params.bias
    if isinstance(rule, (Epsilon, Norm)):
        epsilon, bias = (
            (rule.epsilon, rule.bias) if isinstance(rule, Epsilon) else (STABILIZER, True)
        )
        assert out is not None
        z = out if bias or b is None else out - layer.bias_like(b, out)
        s = _share(relevance, z, epsilon)  # a new tensor: ``out`` is kept intact
        return layer.adjoint(s, x, w).mul_(x)
    if isinstance(rule, Gamma):
        wg = w + rule.gamma * params.need("w+")
        bp = params.get("b+")
        bg = b + rule.gamma * bp if rule.bias and b is not None and bp is not None else None
        s = _share(relevance, layer.forward(x, wg, bg), STABILIZER)
        return layer.adjoint(s, x, wg).mul_(x)
    if isinstance(rule, (ZPlus, AlphaBeta)):
        alpha, beta = (rule.alpha, rule.beta) if isinstance(rule, AlphaBeta) else (1.0, 0.0)
        bias_pos = params.get("b+") if rule.bias else None
        result = _signed_term(layer, x, facts, relevance, "+-", bias_pos)
        if alpha != 1.0:
            result = alpha * result
        if beta:
            bias_neg = params.get("b-") if rule.bias else None
            result = result - beta * _signed_term(layer, x, facts, relevance, "-+", bias_neg)
        return result
    if isinstance(rule, ZBox):
        low, high = facts.bound(rule.low, x), facts.bound(rule.high, x)
        wp, wn = params.need("w+"), params.need("w-")
        assert out is not None
        z = out - (
            layer.forward(low, wp, params.get("b+")) + layer.forward(high, wn, params.get("b-"))
        )
        s = _share(relevance, z, STABILIZER)
        return layer.adjoint(s, x, w).mul_(x) - (
            layer.adjoint(s, x, wp).mul_(low) + layer.adjoint(s, x, wn).mul_(high)
        )
    if isinstance(rule, (Flat, WSquare)):
        ones = facts.ones(x)
        if isinstance(rule, Flat):
            wm, bm = params.need("ones"), None
        else:
            wm, bm = params.need("w2"), (params.get("b2") if rule.bias else None)
        s = _share(relevance, layer.forward(ones, wm, bm), STABILIZER, positive=True)
        return layer.adjoint(s, ones, wm)
    raise InvalidOptionError(f"{rule.name} cannot apply to a {layer.kind} layer")


def _needs_output(rule: Rule) -> bool:
    return isinstance(rule, (Epsilon, Norm, ZBox))


def _unbroadcast(t: Tensor, shape: torch.Size) -> Tensor:
    """Sum ``t`` over the dimensions that broadcasting added to a tensor of ``shape``."""
    if t.shape == shape:
        return t
    lead = t.dim() - len(shape)
    if lead:
        t = t.sum(dim=tuple(range(lead)))
    dims = tuple(i for i, n in enumerate(shape) if n == 1 and t.shape[i] != 1)
    return t.sum(dim=dims, keepdim=True) if dims else t


# ---------------------------------------------------------------------------- steps


class _Saved:
    """Tensors a step keeps for its backward: detached aliases and their versions (an
    in-place change the engine did not see raises instead of giving wrong relevance)."""

    def __init__(self) -> None:
        self.tensors: dict[str, Tensor] = {}
        self.versions: dict[str, int] = {}

    def keep(self, name: str, t: Tensor) -> None:
        alias = t.detach()
        self.tensors[name] = alias
        self.versions[name] = alias._version

    def copy(self, name: str) -> None:
        """Keep a private copy (before an in-place op overwrites the original)."""
        alias = self.tensors[name]
        if alias._version == self.versions[name]:
            self.tensors[name] = alias.clone()
            self.versions[name] = self.tensors[name]._version

    def get(self, name: str, what: str) -> Tensor:
        t = self.tensors[name]
        if t._version != self.versions[name]:
            raise RuleNotAppliedError(
                f"LRP: the {name} of {what} was modified in place (through a view) after it "
                "was used; the relevance would be wrong — avoid in-place ops on views of "
                "activations or pass a copy"
            )
        return t


class _Step:
    """What one replaced op computes forward and how its relevance goes backward."""

    what = "an op"

    def __init__(self) -> None:
        self.saved = _Saved()


class _LayerStep(_Step):
    def __init__(self, layer: _Layer, rule: Rule, facts: _Input, run: Callable[[], Tensor]):
        super().__init__()
        self.layer, self.rule, self.facts, self.run = layer, rule, facts, run
        self.what = f"a {layer.kind} layer"

    def forward(self, ctx: Any, x: Tensor) -> Tensor:
        out = self.run()
        self.run = _spent
        self.saved.keep("input", x)
        if _needs_output(self.rule):
            self.saved.keep("output", out)
        return out

    def backward(self, relevance: Tensor) -> Tensor:
        x = self.saved.get("input", self.what)
        out = self.saved.get("output", self.what) if _needs_output(self.rule) else None
        return _layer_relevance(self.rule, self.layer, x, out, self.facts, relevance)


def _spent() -> Tensor:
    raise RuntimeError("an LRP step ran twice")


class _PassStep(_Step):
    def __init__(self, run: Callable[[], Tensor], inplace: bool) -> None:
        super().__init__()
        self.run, self.inplace = run, inplace
        self.shape = torch.Size()

    def forward(self, ctx: Any, x: Tensor) -> Tensor:
        self.shape = x.shape
        out = self.run()
        self.run = _spent
        if self.inplace:
            ctx.mark_dirty(x)
        return out

    def backward(self, relevance: Tensor) -> Tensor:
        return _unbroadcast(relevance, self.shape)


class _NormStep(_Step):
    """Norm on a parameter-free op of one activation (pooling, mean, sum over dims)."""

    what = "a pooling op"

    def __init__(self, fn: Callable[[Tensor], Tensor], epsilon: float) -> None:
        super().__init__()
        self.fn, self.epsilon = fn, epsilon

    def forward(self, ctx: Any, x: Tensor) -> Tensor:
        self.saved.keep("input", x)
        return self.fn(x)

    def backward(self, relevance: Tensor) -> Tensor:
        x = self.saved.get("input", self.what)
        with torch.enable_grad():
            leaf = x.detach().requires_grad_()
            out = self.fn(leaf)
            s = _share(relevance, out.detach(), self.epsilon)
            (grad,) = torch.autograd.grad(out, leaf, s)
        return x * grad


class _SumStep(_Step):
    """Norm on ``ca·a + cb·b`` (a residual addition), in place or not."""

    what = "a sum"

    def __init__(
        self, run: Callable[[], Tensor], ca: float, cb: float, epsilon: float, inplace: bool
    ) -> None:
        super().__init__()
        self.run, self.ca, self.cb, self.epsilon, self.inplace = run, ca, cb, epsilon, inplace
        self.shapes = (torch.Size(), torch.Size())

    def forward(self, ctx: Any, a: Tensor, b: Tensor) -> Tensor:
        self.shapes = (a.shape, b.shape)
        if self.inplace:
            self.saved.tensors["a"] = a.detach().clone()  # private: overwritten below
            self.saved.versions["a"] = self.saved.tensors["a"]._version
        else:
            self.saved.keep("a", a)
        self.saved.keep("b", b)
        out = self.run()
        self.run = _spent
        if self.inplace:
            ctx.mark_dirty(a)
        return out

    def backward(self, relevance: Tensor) -> tuple[Tensor, Tensor]:
        a, b = self.saved.get("a", self.what), self.saved.get("b", self.what)
        ta = a if self.ca == 1.0 else self.ca * a
        tb = b if self.cb == 1.0 else self.cb * b
        s = _share(relevance, ta + tb, self.epsilon)
        return _unbroadcast(ta * s, self.shapes[0]), _unbroadcast(tb * s, self.shapes[1])


class _StepFunction(torch.autograd.Function):
    """Forward: the op. Backward: the step's rule."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, step: Any) -> Tensor:
        ctx.step = step
        return step.forward(ctx, x)

    @staticmethod
    def backward(ctx: Any, relevance: Tensor) -> tuple[Tensor, None]:
        return ctx.step.backward(relevance), None


class _PairFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, a: Tensor, b: Tensor, step: _SumStep) -> Tensor:
        ctx.step = step
        return step.forward(ctx, a, b)

    @staticmethod
    def backward(ctx: Any, relevance: Tensor) -> tuple[Tensor, Tensor, None]:
        ra, rb = ctx.step.backward(relevance)
        return ra, rb, None


class _Unruled(torch.autograd.Function):
    """Identity forward; its backward records that relevance flowed through an op that
    has no rule (and lets the gradient through, so that the pass completes)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, record: Callable[[], None]) -> Tensor:
        ctx.record = record
        return x

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        ctx.record()
        return grad, None


# ---------------------------------------------------------------------------- op tables


def _both(*names: str) -> list[Any]:
    """``Tensor.name`` and ``TensorBase.name`` (which the dunder ops dispatch to)."""
    found: list[Any] = []
    for name in names:
        for owner in (Tensor, torch._C.TensorBase, torch):
            fn = getattr(owner, name, None)
            if fn is not None and fn not in found:
                found.append(fn)
    return found


_OPS: dict[Any, str] = {}


def _table(category: str, functions: list[Any]) -> None:
    for fn in functions:
        _OPS.setdefault(fn, category)


_table("conv", [torch.conv1d, torch.conv2d, torch.conv3d])
_table("linear", [F.linear])
_table("batch_norm", [F.batch_norm, torch.batch_norm])
_table(
    "avg_pool",
    [
        F.avg_pool1d,
        F.avg_pool2d,
        F.avg_pool3d,
        F.adaptive_avg_pool1d,
        F.adaptive_avg_pool2d,
        F.adaptive_avg_pool3d,
        *_both("mean"),
    ],
)
_table("sum", _both("sum"))
_table("add", _both("add", "add_", "sub", "sub_", "subtract", "__rsub__", "rsub"))
_table(
    "scale", _both("mul", "mul_", "multiply", "div", "div_", "divide", "true_divide", "__rdiv__")
)
_table("elementwise", list(_PARSERS) + list(_OTHER_NONLINEARITIES))
_table(
    "elementwise",
    [
        *_both(
            "neg",
            "neg_",
            "abs",
            "abs_",
            "exp",
            "exp_",
            "expm1",
            "log",
            "log1p",
            "log2",
            "log10",
            "sqrt",
            "sqrt_",
            "rsqrt",
            "square",
            "pow",
            "pow_",
            "__rpow__",
            "reciprocal",
            "sigmoid_",
            "tanh_",
            "erf",
            "sin",
            "cos",
            "nan_to_num",
            "clamp_max",
            "clamp_max_",
            "hardtanh",
            "where",
            "masked_fill",
            "masked_fill_",
        ),
        F.relu6,
        F.elu_,
        F.celu_,
        F.selu,
        F.hardtanh,
        F.tanhshrink,
        F.softshrink,
        F.hardshrink,
    ],
)
_OPS.pop(F.glu, None)  # a product of two halves: no rule
_table(
    "max_pool",
    [
        F.max_pool1d,
        F.max_pool2d,
        F.max_pool3d,
        F.adaptive_max_pool1d,
        F.adaptive_max_pool2d,
        F.adaptive_max_pool3d,
        F.max_pool1d_with_indices,
        F.max_pool2d_with_indices,
        F.max_pool3d_with_indices,
        F.adaptive_max_pool1d_with_indices,
        F.adaptive_max_pool2d_with_indices,
        F.adaptive_max_pool3d_with_indices,
        *_both("max", "amax", "min", "amin", "maximum", "minimum"),
    ],
)
_table(
    "dropout",
    [F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout, F.feature_alpha_dropout],
)
_table("pad", [F.pad])
_table(
    "shape",
    [
        *_both(
            "view",
            "view_as",
            "reshape",
            "reshape_as",
            "flatten",
            "unflatten",
            "permute",
            "transpose",
            "swapaxes",
            "swapdims",
            "movedim",
            "moveaxis",
            "t",
            "contiguous",
            "squeeze",
            "unsqueeze",
            "expand",
            "expand_as",
            "cat",
            "concat",
            "concatenate",
            "stack",
            "split",
            "split_with_sizes",
            "tensor_split",
            "chunk",
            "unbind",
            "narrow",
            "select",
            "index_select",
            "gather",
            "__getitem__",
            "__setitem__",
            "clone",
            "to",
            "type",
            "type_as",
            "float",
            "double",
            "half",
            "bfloat16",
            "cpu",
            "cuda",
            "flip",
            "roll",
            "repeat",
            "tile",
            "requires_grad_",
            "retain_grad",
            "detach",
            "pixel_shuffle",
            "pixel_unshuffle",
            "masked_select",
        ),
        F.pixel_shuffle,
        F.pixel_unshuffle,
        Tensor.T.__get__,  # type: ignore[attr-defined]
        Tensor.mT.__get__,  # type: ignore[attr-defined]
    ],
)

# name -> (coefficient of self, coefficient of other given alpha, in place)
_ADD_SIGNS: dict[str, tuple[float, float]] = {
    "add": (1.0, 1.0),
    "add_": (1.0, 1.0),
    "sub": (1.0, -1.0),
    "sub_": (1.0, -1.0),
    "subtract": (1.0, -1.0),
}

_NONNEG_OPS = ("relu", "relu6", "clamp(min=0)", "clamp_min(0)", "threshold(0, 0)")


def _op_name(func: Any) -> str:
    name = getattr(func, "__name__", None) or str(func)
    return (
        "getitem" if name == "__getitem__" else name.strip("_") if name.startswith("__") else name
    )


@dataclass(frozen=True)
class _Signature:
    inplace_index: int | None  # position of an "inplace" parameter, if the function has one
    training_index: int | None


_SIGNATURES: dict[Any, _Signature] = {}


def _signature(func: Any) -> _Signature:
    found = _SIGNATURES.get(func)
    if found is None:
        try:
            names = list(inspect.signature(func).parameters)
        except (TypeError, ValueError):
            names = []
        found = _Signature(
            names.index("inplace") if "inplace" in names else None,
            names.index("training") if "training" in names else None,
        )
        _SIGNATURES[func] = found
    return found


def _argument(args: tuple[Any, ...], kwargs: dict[str, Any], index: int | None, name: str) -> Any:
    if name in kwargs:
        return kwargs[name]
    if index is not None and len(args) > index:
        return args[index]
    return None


def _is_inplace(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    name = getattr(func, "__name__", "")
    if (name.endswith("_") and not name.startswith("__")) or name == "__setitem__":
        return True
    if kwargs.get("out") is not None:
        return True
    if not isinstance(func, type(F.dropout)):
        return False
    return bool(_argument(args, kwargs, _signature(func).inplace_index, "inplace"))


# ---------------------------------------------------------------------------- tracking

_CONSTANT, _INPUT, _PARAM, _ACTIVATION = range(4)


class _Info:
    """What the engine knows of a tensor of the forward pass (non-default facts only)."""

    __slots__ = ("fold", "nonneg", "origin", "pad")

    def __init__(
        self,
        origin: int,
        nonneg: bool = False,
        pad: tuple[torch.Size, tuple[int, ...]] | None = None,
        fold: _Fold | None = None,
    ) -> None:
        self.origin, self.nonneg, self.pad, self.fold = origin, nonneg, pad, fold


@dataclass
class _Fold:
    """A conv output computed with its batch norm merged in: awaiting that batch norm."""

    layer: str
    bn: nn.Module
    bn_name: str
    consumed: bool = False


@dataclass
class _Scan:
    """The tensors among a call's arguments: carriers (activations or input-derived)."""

    carriers: list[Tensor] = field(default_factory=list)
    origins: list[int] = field(default_factory=list)
    infos: list[_Info | None] = field(default_factory=list)
    folds: list[_Fold] = field(default_factory=list)
    learned: bool = False
    others: bool = False  # tensors besides the carriers (constants, parameters)

    @property
    def activation(self) -> bool:
        return _ACTIVATION in self.origins

    @property
    def origin(self) -> int:
        """The origin of a result computed from these arguments."""
        if self.activation or (self.carriers and self.learned):
            return _ACTIVATION
        if self.carriers:
            return _INPUT
        return _PARAM if self.learned else _CONSTANT

    @property
    def nonneg(self) -> bool:
        """Every argument is a carrier known to be non-negative (a constant among them,
        as in ``cat([relu(x), c])``, could be negative)."""
        return (
            bool(self.infos)
            and not self.others
            and all(i is not None and i.nonneg for i in self.infos)
        )


class RelevanceRule(TorchFunctionMode):
    """Run a forward pass whose backward pass is LRP (see the module docstring).

    Parameters
    ----------
    composite : Composite or str
        The rules (a :class:`Composite`, or a name of :data:`COMPOSITES` that needs no
        options).
    model : nn.Module or None
        The model: needed to fold batch norms (``canonize``) and for module names in
        selectors and messages.
    canonize : bool
        Fold each batch norm that directly follows a conv/linear layer into it (see the
        module docstring); with ``False`` every batch norm is its own layer.

    Attributes
    ----------
    fired : Counter
        ``"kind: Rule" -> count`` over all passes (``"conv: ZPlus"``, ``"conv: Flat"``,
        ``"batch_norm: merged"``, ``"max_pool: WinnerTakesAll"``); ``passes`` counts the
        ``with`` blocks.
    unruled : Counter
        ``"op in 'module'" -> count`` of ops that carried relevance without a rule.

    Notes
    -----
    The backward pass must run after the ``with`` block has exited; call :meth:`check`
    after it.
    """

    def __init__(
        self, composite: Composite | str, model: nn.Module | None = None, *, canonize: bool = True
    ) -> None:
        super().__init__()
        self.composite = make_composite(composite)
        self.canonize = _flag(canonize, "canonize")
        self.fired: Counter[str] = Counter()
        self.unruled: Counter[str] = Counter()
        self.passes = 0
        self._marks: dict[int, tuple[weakref.ref[Tensor], _Info]] = {}
        self._saved: dict[int, tuple[weakref.ref[Tensor], list[tuple[Any, str]]]] = {}
        self._index = 0
        self._modules: dict[int, str] = {}
        self._owners: dict[int, str] = {}
        self._bns: dict[int, tuple[nn.Module, str]] = {}
        self._pairs: dict[int, tuple[nn.Module, str]] = {}
        self._cache: dict[tuple[int, ...], tuple[Any, tuple[int, ...], _Params]] = {}
        if model is not None:
            self._learn(model)
        self._by_kind = self._kind_table()

    # ------------------------------------------------------------- the model

    def _learn(self, model: nn.Module) -> None:
        names = list(model.named_modules())
        known = [n for n, _ in names if n]
        for glob in self.composite.globs:
            if not any(fnmatch.fnmatchcase(n, glob) for n in known):
                raise InvalidOptionError(
                    f"composite {self.composite.name!r} selects {glob!r}, which matches no "
                    f"module of the model{suggest(glob, known + list(KINDS) + ['first'])} (a "
                    f"selector is a kind — {', '.join(KINDS)} —, 'first', a module-name glob "
                    "or a function of a LayerCall)"
                )
        self._modules = {id(m): n for n, m in names}
        for name, p in model.named_parameters():
            self._owners[id(p)] = name.rpartition(".")[0]
        for name, m in names:
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
                self._bns[id(m.running_mean)] = (m, name)
            children = [
                (f"{name}.{k}" if name else k, c) for k, c in m._modules.items() if c is not None
            ]
            for (_, a), (bn_name, b) in itertools.pairwise(children):
                if self._foldable(a, b):
                    self._pairs[id(a.weight)] = (b, bn_name)

    @staticmethod
    def _foldable(layer: nn.Module, bn: nn.Module) -> bool:
        kinds = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
        if not isinstance(layer, kinds) or not isinstance(bn, nn.modules.batchnorm._BatchNorm):
            return False
        channels = layer.out_features if isinstance(layer, nn.Linear) else layer.out_channels
        return (
            bn.running_mean is not None
            and bn.running_var is not None
            and not bn.training
            and bn.num_features == channels
        )

    def _kind_table(self) -> dict[tuple[str, bool], Rule | None] | None:
        """Rules by (kind, first) when every selector is a kind or "first"."""
        if any(
            not isinstance(s, str) or (s != "first" and s not in KINDS)
            for s, _ in self.composite.rules
        ):
            return None
        table: dict[tuple[str, bool], Rule | None] = {}
        for kind in KINDS:
            for first in (False, True):
                call = LayerCall(kind, "", "", 0, first)
                table[kind, first] = self._match(call)
        return table

    def _match(self, call: LayerCall) -> Rule | None:
        for selector, rule in self.composite.rules:
            if call.kind not in rule.kinds:
                continue
            if isinstance(selector, str):
                if selector == "first":
                    hit = call.first
                elif selector in KINDS:
                    hit = selector == call.kind
                else:
                    hit = fnmatch.fnmatchcase(call.module, selector)
            else:
                hit = selector(call)
                if not isinstance(hit, bool):
                    raise InvalidOptionError(
                        f"a composite's selector function must return True or False, got {hit!r}"
                    )
            if hit:
                return rule
        return None

    def _rule(
        self, kind: str, op: str, module: Callable[[], str], index: int, first: bool
    ) -> Rule | None:
        if self._by_kind is not None:
            return self._by_kind[kind, first]
        return self._match(LayerCall(kind, op, module(), index, first))

    def _calling_module(self) -> str:
        """The innermost module of the model whose ``forward`` is on the call stack."""
        frame: FrameType | None = sys._getframe(1)
        while frame is not None:
            owner = frame.f_locals.get("self")
            name = self._modules.get(id(owner)) if owner is not None else None
            if name is not None:
                return name
            frame = frame.f_back
        return ""

    # ------------------------------------------------------------- mode

    def __enter__(self) -> RelevanceRule:
        self.passes += 1
        self._index = 0
        self._marks.clear()
        self._saved.clear()
        super().__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._marks.clear()
        self._saved.clear()
        super().__exit__(*exc)

    def __torch_function__(
        self,
        func: Any,
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        if (
            self._saved
            and args
            and isinstance(args[0], Tensor)
            and id(args[0]) in self._saved
            and _is_inplace(func, args, kwargs)
        ):
            self._copy_saved(args[0])
        category = _OPS.get(func)
        if category is None:
            return self._unknown(func, args, kwargs)
        return getattr(self, "_op_" + category)(func, args, kwargs)

    # ------------------------------------------------------------- tracking

    def _info(self, t: Tensor) -> _Info | None:
        entry = self._marks.get(id(t))
        if entry is not None and entry[0]() is t:
            return entry[1]
        return None

    def _origin(self, t: Tensor, info: _Info | None) -> int:
        if isinstance(t, nn.Parameter):
            return _PARAM
        if info is not None:
            return info.origin
        if t.requires_grad:
            return _INPUT if t.grad_fn is None else _ACTIVATION
        return _CONSTANT

    def _scan(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> _Scan:
        scan = _Scan()
        for t in _tensors(args, kwargs):
            info = self._info(t)
            origin = self._origin(t, info)
            if origin in (_INPUT, _ACTIVATION):
                if any(t is c for c in scan.carriers):  # x * x, x + x: one tensor
                    continue
                scan.carriers.append(t)
                scan.origins.append(origin)
                scan.infos.append(info)
                if info is not None and info.fold is not None:
                    scan.folds.append(info.fold)
            else:
                scan.others = True
                scan.learned = scan.learned or origin == _PARAM
        return scan

    def _consume(self, scan: _Scan, out: Any = None, func: Any = None) -> None:
        """Refuse a folded conv output used by anything but its batch norm, when the use
        feeds the relevance (``out`` given: only if one of its results requires grad)."""
        if not scan.folds:
            return
        if out is not None and not any(r.requires_grad for r in _results(func, (), out)):
            return
        self._refuse_fold(scan.folds[0])

    def _refuse_fold(self, fold: _Fold) -> None:
        """A folded conv output used by something other than its batch norm."""
        where = "after" if fold.consumed else "before"
        raise RuleNotAppliedError(
            f"LRP canonization: the output of {fold.layer!r} is used {where} its batch norm "
            f"{fold.bn_name!r} by another op, so the batch norm cannot be folded into it — "
            "pass canonize=False"
        )

    def _mark(self, t: Any, origin: int, nonneg: bool = False, **facts: Any) -> None:
        if not isinstance(t, Tensor):
            for v in t if isinstance(t, (list, tuple)) else ():
                if isinstance(v, Tensor):
                    self._mark(v, origin, nonneg)
            return
        if (origin == _ACTIVATION and not nonneg and not facts) or (
            origin in (_INPUT, _ACTIVATION) and not t.requires_grad
        ):
            self._marks.pop(id(t), None)
            return
        self._marks[id(t)] = (weakref.ref(t), _Info(origin, nonneg, **facts))

    def _keep(self, step: _Step, name: str, t: Tensor) -> None:
        """Remember that ``step`` keeps ``t`` (to copy it before an in-place op)."""
        if name not in step.saved.tensors:
            return
        entry = self._saved.get(id(t))
        if entry is None or entry[0]() is not t:
            entry = (weakref.ref(t), [])
            self._saved[id(t)] = entry
        entry[1].append((weakref.ref(step), name))

    def _copy_saved(self, t: Tensor) -> None:
        entry = self._saved.pop(id(t))
        if entry[0]() is not t:
            return
        for ref, name in entry[1]:
            step = ref()
            if step is not None:
                step.saved.copy(name)

    def _flagged(self, what: str, out: Tensor) -> Tensor:
        """``out`` passed through a marker that records ``what`` if relevance reaches it."""
        key = what

        def record() -> None:
            self.unruled[key] += 1

        flagged: Tensor = _Unruled.apply(out, record)
        return flagged

    def _where(self, module: str) -> str:
        return f"in {module!r}" if module else "in the model's own forward"

    # ------------------------------------------------------------- ops without a rule

    def _unknown(
        self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any], why: str = ""
    ) -> Any:
        out = func(*args, **kwargs)
        results = _results(func, args, out)
        if not results:
            return out
        scan = self._scan(args, kwargs)
        if not any(r.requires_grad for r in results) or not scan.activation:
            self._mark(out if isinstance(out, Tensor) else results, scan.origin)
            self._consume(scan, out, func)
            return out
        self._consume(scan)
        what = f"{_op_name(func)}{why} {self._where(self._calling_module())}"
        if isinstance(out, Tensor) and not _is_inplace(func, args, kwargs):
            return self._flagged(what, out)
        self.unruled[what] += 1
        return out

    # ------------------------------------------------------------- layers

    def _op_conv(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        return self._layer(func, args, kwargs, "conv")

    def _op_linear(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        return self._layer(func, args, kwargs, "linear")

    def _layer(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any], kind: str) -> Any:
        x = _argument(args, kwargs, 0, "input")
        weight = _argument(args, kwargs, 1, "weight")
        bias = _argument(args, kwargs, 2, "bias")
        scan = self._scan(args, kwargs)
        xinfo = self._info(x) if isinstance(x, Tensor) else None
        if not isinstance(x, Tensor) or self._origin(x, xinfo) not in (_INPUT, _ACTIVATION):
            return self._unknown(func, args, kwargs)
        if len(scan.carriers) > 1:
            return self._unknown(func, args, kwargs, " with an activation as weight or bias")
        self._consume(scan)
        index, self._index = self._index, self._index + 1
        on_input = self._origin(x, xinfo) == _INPUT
        owner = self._owners.get(id(weight))
        module = (lambda: owner) if owner is not None else self._calling_module
        fold = self._pairs.get(id(weight)) if self.canonize else None
        params = self._params(weight, bias, fold[0] if fold is not None else None)
        layer = self._make_layer(kind, params, args, kwargs)
        run: Callable[[], Tensor] = lambda: func(*args, **kwargs)  # noqa: E731
        if fold is not None:
            run = lambda: layer.forward(x, params.weight, params.bias)  # noqa: E731
        rule = self._rule(kind, _op_name(func), module, index, index == 0 or on_input)
        if rule is None:
            reason = f" (composite {self.composite.name!r} has no rule for {kind!r} layers)"
            out = self._flagged(f"{_op_name(func)}{reason} {self._where(module())}", run())
        else:
            if isinstance(rule, ZBox) and not on_input:
                raise InvalidInputError(
                    f"LRP: the box rule needs the first layer {module()!r} to see the model "
                    "input, but its input was computed by other layers (so low/high would not "
                    "bound it); use a composite without ZBox, or select by name the layer that "
                    "sees the input"
                )
            facts = _Input(nonneg=bool(xinfo and xinfo.nonneg), pad=xinfo.pad if xinfo else None)
            step = _LayerStep(layer, rule, facts, run)
            out = _StepFunction.apply(x, step)
            self._keep(step, "input", x)
            self._keep(step, "output", out)
            self.fired[f"{kind}: {rule.name}"] += 1
        if fold is not None:
            self._mark(out, _ACTIVATION, fold=_Fold(module(), fold[0], fold[1]))
        else:
            self._mark(out, _ACTIVATION)
        return out

    def _make_layer(
        self, kind: str, params: _Params, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> _Layer:
        if kind == "linear":
            return _Dense(params)
        w = params.weight
        d = w.dim() - 2
        stride = _ntuple(_argument(args, kwargs, 3, "stride") or 1, d)
        padding: Any = _argument(args, kwargs, 4, "padding") or 0
        dilation = _ntuple(_argument(args, kwargs, 5, "dilation") or 1, d)
        groups = int(_argument(args, kwargs, 6, "groups") or 1)
        if isinstance(padding, str):
            totals = [dil * (k - 1) for dil, k in zip(dilation, w.shape[2:])]
            if padding == "valid":
                padding = [0] * d
            elif all(t % 2 == 0 for t in totals):
                padding = [t // 2 for t in totals]
            else:
                raise InvalidInputError(
                    "LRP: a conv with padding='same' and an even kernel pads unevenly, which the "
                    "rules do not support; pad explicitly with F.pad"
                )
        return _Conv(params, stride, _ntuple(padding, d), dilation, groups)

    def _params(self, weight: Tensor, bias: Any, bn: Any) -> _Params:
        """The layer's parameters, merged with ``bn`` when folded; cached per engine while
        the tensors keep their version (so repeated passes reuse ``w⁺``, the merge, …)."""
        tensors = [weight, bias] + (
            [bn.running_var, bn.running_mean, bn.weight, bn.bias] if bn is not None else []
        )
        key = tuple(id(t) for t in tensors)
        versions = tuple(t._version if isinstance(t, Tensor) else -1 for t in tensors)
        cached = self._cache.get(key)
        if cached is not None and cached[0]() is weight and cached[1] == versions:
            return cached[2]
        w = weight.detach()
        b = bias.detach() if isinstance(bias, Tensor) else None
        params = _Params(*_merge(w, b, bn)) if bn is not None else _Params(w, b)
        self._cache[key] = (weakref.ref(weight), versions, params)
        return params

    def _op_batch_norm(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        names = (
            "input",
            "running_mean",
            "running_var",
            "weight",
            "bias",
            "training",
            "momentum",
            "eps",
        )
        x, mean, var, weight, bias, training, _, eps = (
            _argument(args, kwargs, i, n) for i, n in enumerate(names)
        )
        xinfo = self._info(x) if isinstance(x, Tensor) else None
        if not isinstance(x, Tensor) or self._origin(x, xinfo) not in (_INPUT, _ACTIVATION):
            return self._unknown(func, args, kwargs)
        known = self._bns.get(id(mean)) if isinstance(mean, Tensor) else None
        fold = xinfo.fold if xinfo is not None else None
        if fold is not None:
            if known is None or known[0] is not fold.bn or fold.consumed or training:
                self._refuse_fold(fold)
            fold.consumed = True
            self.fired["batch_norm: merged"] += 1
            out = x.clone()
            self._mark(out, _ACTIVATION)
            return out
        if (
            self.canonize
            and known is not None
            and any(known[0] is p[0] for p in self._pairs.values())
        ):
            raise RuleNotAppliedError(
                f"LRP canonization: batch norm {known[1]!r} did not receive the output of the "
                "layer before it, so it cannot be folded into that layer — pass canonize=False"
            )
        module = (lambda: known[1]) if known is not None else self._calling_module
        if training or mean is None or var is None:
            return self._unknown(func, args, kwargs, " with batch statistics (training mode)")
        scan = self._scan(args, kwargs)
        if len(scan.carriers) > 1:
            return self._unknown(func, args, kwargs, " with activations as parameters")
        self._consume(scan)
        var_, mean_ = var.detach(), mean.detach()
        denominator = (var_ + eps) ** 0.5
        gamma = weight.detach() if isinstance(weight, Tensor) else torch.ones_like(var_)
        beta = bias.detach() if isinstance(bias, Tensor) else torch.zeros_like(var_)
        scale = gamma / denominator
        layer = _Diagonal(_Params(scale, beta - mean_ * scale))
        rule = self._rule("batch_norm", _op_name(func), module, -1, False)
        run: Callable[[], Tensor] = lambda: func(*args, **kwargs)  # noqa: E731
        if rule is None:
            what = f"batch_norm (composite {self.composite.name!r} has no rule for it)"
            return self._flagged(f"{what} {self._where(module())}", run())
        facts = _Input(nonneg=bool(xinfo and xinfo.nonneg))
        step = _LayerStep(layer, rule, facts, run)
        out = _StepFunction.apply(x, step)
        self._keep(step, "input", x)
        self._keep(step, "output", out)
        self.fired[f"batch_norm: {rule.name}"] += 1
        self._mark(out, _ACTIVATION)
        return out

    # ------------------------------------------------------------- Norm ops

    def _norm_rule(self, kind: str, func: Any) -> tuple[Rule | None, float]:
        rule = self._rule(kind, _op_name(func), self._calling_module, -1, False)
        if isinstance(rule, Epsilon):
            return rule, rule.epsilon
        return rule, STABILIZER

    def _op_avg_pool(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        return self._pool(func, args, kwargs, "avg_pool")

    def _op_sum(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        return self._pool(func, args, kwargs, "sum")

    def _pool(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any], kind: str) -> Any:
        scan = self._scan(args, kwargs)
        x = _argument(args, kwargs, 0, "input")
        if not scan.carriers or len(scan.carriers) > 1 or x is not scan.carriers[0]:
            return self._unknown(func, args, kwargs)
        self._consume(scan)
        rule, epsilon = self._norm_rule(kind, func)
        if rule is None:
            what = f"{_op_name(func)} (composite {self.composite.name!r} has no rule for {kind!r})"
            return self._flagged(
                f"{what} {self._where(self._calling_module())}", func(*args, **kwargs)
            )
        rest = args[1:]
        others = {k: v for k, v in kwargs.items() if k != "input"}
        step = _NormStep(lambda t: func(t, *rest, **others), epsilon)
        out = _StepFunction.apply(x, step)
        self._keep(step, "input", x)
        self.fired[f"{kind}: {rule.name}"] += 1
        self._mark(out, scan.origin, scan.nonneg)
        return out

    def _op_add(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        scan = self._scan(args, kwargs)
        if len(scan.carriers) != 2:
            return self._elementwise(func, args, kwargs, scan)
        a, b = _argument(args, kwargs, 0, "input"), _argument(args, kwargs, 1, "other")
        if not (isinstance(a, Tensor) and isinstance(b, Tensor)):
            return self._unknown(func, args, kwargs)
        self._consume(scan)
        name = getattr(func, "__name__", "")
        alpha = kwargs.get("alpha", args[2] if len(args) > 2 else 1)
        if name in ("__rsub__", "rsub"):  # other - alpha * self
            ca, cb = -float(alpha), 1.0
        else:
            sa, sb = _ADD_SIGNS.get(name, (1.0, 1.0))
            ca, cb = sa, sb * float(alpha)
        rule, epsilon = self._norm_rule("sum", func)
        if rule is None:
            what = f"{_op_name(func)} (composite {self.composite.name!r} has no rule for 'sum')"
            return self._flagged(
                f"{what} {self._where(self._calling_module())}", func(*args, **kwargs)
            )
        inplace = _is_inplace(func, args, kwargs)
        step = _SumStep(lambda: func(*args, **kwargs), ca, cb, epsilon, inplace)
        out = _PairFunction.apply(a, b, step)
        self._keep(step, "b", b)
        if not inplace:
            self._keep(step, "a", a)
        self.fired[f"sum: {rule.name}"] += 1
        self._mark(out, scan.origin, scan.nonneg and ca > 0 and cb > 0)
        return out

    # ------------------------------------------------------------- elementwise ops

    def _op_scale(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        scan = self._scan(args, kwargs)
        if len(scan.carriers) > 1:
            return self._unknown(func, args, kwargs, " of two activations")
        return self._elementwise(func, args, kwargs, scan)

    def _op_elementwise(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        scan = self._scan(args, kwargs)
        if len(scan.carriers) > 1:
            return self._unknown(func, args, kwargs, " of two activations")
        return self._elementwise(func, args, kwargs, scan)

    def _elementwise(
        self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any], scan: _Scan
    ) -> Any:
        if not scan.carriers:
            out = func(*args, **kwargs)
            self._mark(out, scan.origin)
            return out
        self._consume(scan)
        x = scan.carriers[0]
        rule = self._rule("activation", _op_name(func), self._calling_module, -1, False)
        if rule is None:
            what = (
                f"{_op_name(func)} (composite {self.composite.name!r} has no rule for 'activation')"
            )
            return self._flagged(
                f"{what} {self._where(self._calling_module())}", func(*args, **kwargs)
            )
        inplace = _is_inplace(func, args, kwargs)
        if inplace and args and args[0] is not x:
            return self._unknown(func, args, kwargs, " writing into a constant")
        step = _PassStep(lambda: func(*args, **kwargs), inplace)
        out = _StepFunction.apply(x, step)
        self.fired[f"activation: {rule.name}"] += 1
        self._mark(out, scan.origin, self._rectifies(func, args, kwargs))
        return out

    @staticmethod
    def _rectifies(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
        """Whether the op's output is non-negative (a ReLU-like op with its kink at 0)."""
        entry = _PARSERS.get(func)
        if entry is None:
            return False
        call = entry[0](args, kwargs, entry[1])
        return call is not None and (
            call.op in _NONNEG_OPS or call.op.startswith(("hardtanh(0,", "clamp(0,"))
        )

    # ------------------------------------------------------------- gradient ops

    def _op_max_pool(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        scan = self._scan(args, kwargs)
        self._consume(scan)
        out = func(*args, **kwargs)
        if scan.carriers:
            self.fired["max_pool: WinnerTakesAll"] += 1
        self._mark(out, scan.origin, scan.nonneg)
        return out

    def _op_shape(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        scan = self._scan(args, kwargs)
        out = func(*args, **kwargs)
        self._consume(scan, out, func)
        if scan.carriers or scan.learned:
            nonneg = scan.nonneg and _op_name(func) != "setitem"  # x[i] = -1.0
            for t in _results(func, args, out):
                self._mark(t, scan.origin, nonneg)
        return out

    def _op_pad(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        scan = self._scan(args, kwargs)
        self._consume(scan)
        out = func(*args, **kwargs)
        x = _argument(args, kwargs, 0, "input")
        pad = _argument(args, kwargs, 1, "pad")
        mode = _argument(args, kwargs, 2, "mode") or "constant"
        value = _argument(args, kwargs, 3, "value")
        if not scan.carriers:
            self._mark(out, scan.origin)
            return out
        zero = mode == "constant" and (value is None or value == 0)
        if not zero:  # reflect/replicate padding copies values: a shape op
            self._mark(out, scan.origin, False)
            return out
        self._mark(out, scan.origin, scan.nonneg, pad=(x.shape, tuple(int(p) for p in pad)))
        return out

    def _op_dropout(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        training = _argument(args, kwargs, _signature(func).training_index, "training")
        if training:
            return self._unknown(func, args, kwargs, " in training mode")
        return self._op_shape(func, args, kwargs)

    # ------------------------------------------------------------- results

    def counts(self) -> dict[str, int]:
        """Rules fired per forward pass, ``"kind: Rule" -> count`` (sorted)."""
        passes = max(1, self.passes)
        return {key: n // passes for key, n in sorted(self.fired.items())}

    def check(self, method: str = "lrp") -> None:
        """Raise :class:`RuleNotAppliedError` if an op carried relevance without a rule, or
        if no layer was reached at all. Call it after the backward pass."""
        if self.unruled:
            listed = "; ".join(f"{what} ×{n}" for what, n in sorted(self.unruled.items()))
            raise RuleNotAppliedError(
                f"{method}: these ops carry activations to the output but have no LRP rule, so "
                f"their relevance would be the plain gradient: {listed}. Give them a rule in a "
                "Composite (selectors: kinds, module-name globs, predicates), or write the op "
                "in a form that has one (nn.SiLU instead of x * sigmoid(x), F.linear for matmul)"
            )
        if self.passes and not any(key.startswith(("conv:", "linear:")) for key in self.fired):
            raise RuleNotAppliedError(
                f"{method} reached no conv or linear layer, so it has nothing to propagate; "
                "if the model is TorchScript, load it as an nn.Module"
            )

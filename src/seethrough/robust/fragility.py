"""Explanation fragility: an attack that keeps the prediction and moves the explanation.

Ghorbani, Abid & Zou (2019), "Interpretation of Neural Networks Is Fragile", AAAI,
Algorithm 1 with the *top-k* dissimilarity, and their random-sign baseline. For each
image ``x`` and its class ``c``:

1. The map ``I(x)`` of the *real* model — the method's attribution for class ``c``,
   ``Σ_channels |·|`` per pixel, normalised to sum 1 (their code's ``saliency``) — and
   ``B``, the indices of its ``k`` largest pixels.
2. ``P`` sign steps ``x' ← Π(x' + α · sign(∇ D(x')))`` on the dissimilarity
   ``D(x') = −Σ_{i∈B} Ĩ(x')_i``, the share of the map left on the original top-k pixels
   (negated), where ``Ĩ`` is the map of the *surrogate*: the model with every ReLU-like
   nonlinearity replaced by ``softplus_β`` (:class:`SoftplusSurrogate`), because a ReLU
   network's gradient map is piecewise constant in ``x``, so ``∇D`` would be zero almost
   everywhere. ``Π`` projects onto the L∞ ball of radius ε around ``x`` and the valid
   range (the same arithmetic as :func:`~seethrough.robust.pgd`).
3. After every step the *real* model classifies ``x'``; an iterate is a candidate only if
   its predicted class is the clean image's. Of the candidates the one whose real map has
   the smallest top-k intersection with ``B`` is kept (strictly smaller than any earlier;
   ties keep the earlier one); with no candidate below 1, the clean image itself. (The
   paper's Algorithm 1 returns the candidate of largest dissimilarity; their code measures
   it, as here, by the real model's top-k intersection: ``measure="intersection"``.)

Each step costs one pass through the surrogate with a double backward (the gradient of a
gradient) and one forward and backward pass of the real model (the label and the map);
integrated gradients ``ig_steps`` times that. On our Fashion-MNIST CNN, 100 images with
the defaults take 34 s on one busy CPU core.

The reported numbers are those of the real model: ``top_k_intersection`` — the fraction
of ``B`` among the top-k pixels of the kept image's map — and ``spearman``, the rank
correlation of the two maps over all pixels (average ranks for ties; NaN for a constant
map). The baseline (``random_baseline=True``) moves every input value by ``±ε`` (pixel
units: ``±ε/std_c``), signs drawn per row from a generator seeded ``seed + i``, clipped to
the valid range, and measures the same two numbers.

Methods (``method``): ``"gradient"`` (Simonyan et al., 2014: the gradient of the class
logit), ``"gradient_x_input"`` (the gradient times the input, in input units, as
:func:`seethrough.explain`), ``"integrated_gradients"`` (Sundararajan et al., 2017: a
right Riemann sum of ``ig_steps`` points from the all-zero baseline of the input space,
as ``explain(..., rule="riemann_right", baseline="zeros")``; their code used 100 points
from the channel-mean image, which is zero in their input space as it is here after
normalisation).

Deviations from the paper and its code (github.com/amiratag/InterpretationFragility):

* **Defaults sized for our 2-core budget**: ``steps = 30`` sign steps of
  ``α = 2.5 · ε / steps`` (PGD's rule, :data:`~seethrough.robust.attacks.STEP_FACTOR`)
  instead of their ``P = 300`` steps of ``α = 0.5`` grey levels (``0.5/255`` pixels)
  whatever ε (their notebooks); both reach the ball's faces. ``ig_steps = 16`` path
  points instead of 100.
* ``top_k = 100``: their CIFAR-10 value (for 32 × 32 inputs; 1000 for 227 × 227 ImageNet
  images). Scale it with the image: the attack refuses ``top_k ≥ H·W``.
* ``beta = 20``: their code used Keras' softplus, ``β = 1``. On our Fashion-MNIST CNN,
  whose pre-activations are small, ``β = 1`` smooths the network so much that its map
  points the attack in a worse direction: median top-k intersection on the first 64 test
  images at ε = 0.05 pixels, 30 steps: 0.44 (β = 1), 0.37 (3), 0.22 (10), 0.19 (20),
  0.19 (30), 0.26 (100); ``tests/test_fragility.py`` checks 20 against 1.
* **The class**: their images were correctly classified and the class explained was the
  true label. Here the class is ``labels[i]`` when given, else the clean prediction; the
  label check is always "the prediction equals the clean prediction", also for rows
  the model gets wrong (filter on ``predicted == classes`` to use their set).
* **The ball is per channel in pixel units** with ``eps_space="pixels"`` (ε in pixels in
  [0, 1], through the preprocessing's std), and the valid range is the preprocessed
  image of ``[0, 1]`` (their code clipped the mean-subtracted image to ``[−mean, 255 −
  mean]``, the same thing in their units).
* **The random baseline** is one random sign perturbation of size ε, ``±ε`` per input
  value (the paper's "random sign perturbation"); their code's ``"random"`` mode instead
  iterates random sign steps of ``α`` and keeps the best iterate by the same criterion (a
  search, not a baseline). Its label is not checked (``random_label_kept`` says where the
  noise changed the prediction).
* **Spearman** is computed on ``Σ_c |map|`` as theirs — not on the clipped maps of
  :func:`seethrough.trust.spearman` (Adebayo et al.'s reduction ties the top 1 % at 1).

The model is untouched (the surrogate is a :class:`~torch.overrides.TorchFunctionMode`
active during the attack's own forward passes only; parameters, buffers, hooks, flags,
``requires_grad``, ``.grad`` and the global RNG come back as they were, also when the
call raises).
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy import stats as scipy_stats
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from ..core.budget import Budget, Progress
from ..core.guard import check_inputs, guarded, unwrap_model
from ..core.stats import paired_test
from ..core.targets import logits_of
from ..errors import (
    InvalidInputError,
    InvalidOptionError,
    NonFiniteError,
    RuleNotAppliedError,
    TargetError,
)
from ..words import Claim, Description, Finding, Term, Value
from .attacks import (
    EPS_SPACES,
    STEP_FACTOR,
    _attack_classes,
    _check_choice,
    _check_count,
    _check_in_range,
    _check_number,
    _Geometry,
    _pixel_scale,
    _row_seeds,
    _valid_box,
)

__all__ = [
    "ALPHA",
    "BETA",
    "FRAGILITY_METHODS",
    "IG_STEPS",
    "STEPS",
    "TOP_K",
    "FragilityResult",
    "FragilitySettings",
    "SoftplusSurrogate",
    "fragility",
    "saliency",
]

FRAGILITY_METHODS: tuple[str, ...] = ("gradient", "gradient_x_input", "integrated_gradients")
"""The maps the attack can move (module docstring)."""
STEPS = 30
"""Default sign steps (the paper: 300)."""
TOP_K = 100
"""Default k: the paper's CIFAR-10 value."""
BETA = 20.0
"""Default β of the softplus surrogate (their code: 1; see the module docstring)."""
IG_STEPS = 16
"""Default path points of integrated gradients (their code: 100)."""
ALPHA = 0.05
"""Level at which :meth:`FragilityResult.describe` says the attack beats random noise."""
_NORMALISE_EPS = 1e-30
"""Added to a map's sum before normalising it (an all-zero map stays all zero)."""


# --------------------------------------------------------------------- the surrogate


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _arg(args: tuple[Any, ...], kwargs: dict[str, Any], index: int, name: str, default: Any) -> Any:
    return args[index] if len(args) > index else kwargs.get(name, default)


@dataclass(frozen=True)
class _Smooth:
    """A ReLU-like call as ``relu(x) − slope · relu(−x)`` (``upper``: ``relu(x) −
    relu(x − upper)``), to be smoothed with softplus."""

    x: Any
    op: str
    inplace: bool
    slope: Any = 0.0  # a number, or a tensor (PReLU's weight)
    upper: float | None = None


def _inplace(args: tuple[Any, ...], kwargs: dict[str, Any], index: int) -> bool:
    return bool(_arg(args, kwargs, index, "inplace", False))


def _relu(inplace: bool | None) -> Callable[..., _Smooth | None]:
    def parse(args: tuple[Any, ...], kwargs: dict[str, Any]) -> _Smooth | None:
        flag = _inplace(args, kwargs, 1) if inplace is None else inplace
        return _Smooth(_arg(args, kwargs, 0, "input", None), "relu", flag)

    return parse


def _hardtanh(inplace: bool | None) -> Callable[..., _Smooth | None]:
    def parse(args: tuple[Any, ...], kwargs: dict[str, Any]) -> _Smooth | None:
        lo = _number(_arg(args, kwargs, 1, "min_val", -1.0))
        hi = _number(_arg(args, kwargs, 2, "max_val", 1.0))
        if lo != 0.0 or hi is None or hi <= 0.0:
            return None  # not ReLU-shaped (hardtanh(-1, 1)): left alone
        flag = _inplace(args, kwargs, 3) if inplace is None else inplace
        return _Smooth(_arg(args, kwargs, 0, "input", None), f"hardtanh(0, {hi:g})", flag, 0.0, hi)

    return parse


def _relu6(args: tuple[Any, ...], kwargs: dict[str, Any]) -> _Smooth | None:
    x = _arg(args, kwargs, 0, "input", None)
    return _Smooth(x, "relu6", _inplace(args, kwargs, 1), 0.0, 6.0)


def _leaky(inplace: bool | None) -> Callable[..., _Smooth | None]:
    def parse(args: tuple[Any, ...], kwargs: dict[str, Any]) -> _Smooth | None:
        slope = _number(_arg(args, kwargs, 1, "negative_slope", 0.01))
        if slope is None:
            return None
        flag = _inplace(args, kwargs, 2) if inplace is None else inplace
        x = _arg(args, kwargs, 0, "input", None)
        return _Smooth(x, f"leaky_relu({slope:g})", flag, slope)

    return parse


def _threshold(inplace: bool | None) -> Callable[..., _Smooth | None]:
    def parse(args: tuple[Any, ...], kwargs: dict[str, Any]) -> _Smooth | None:
        threshold = _number(_arg(args, kwargs, 1, "threshold", None))
        value = _number(_arg(args, kwargs, 2, "value", None))
        if threshold != 0.0 or value != 0.0:
            return None
        flag = _inplace(args, kwargs, 3) if inplace is None else inplace
        return _Smooth(_arg(args, kwargs, 0, "input", None), "threshold(0, 0)", flag)

    return parse


def _prelu(args: tuple[Any, ...], kwargs: dict[str, Any]) -> _Smooth | None:
    x = _arg(args, kwargs, 0, "input", None)
    weight = _arg(args, kwargs, 1, "weight", None)
    if not isinstance(weight, Tensor) or not isinstance(x, Tensor):
        return None
    if weight.numel() > 1 and x.dim() > 1:
        weight = weight.view(1, -1, *([1] * (x.dim() - 2)))
    return _Smooth(x, "prelu", False, weight)


_SMOOTHED: dict[Any, Callable[..., _Smooth | None]] = {
    F.relu: _relu(None),
    torch.relu: _relu(False),
    torch.relu_: _relu(True),
    Tensor.relu: _relu(False),
    Tensor.relu_: _relu(True),
    F.relu6: _relu6,
    F.hardtanh: _hardtanh(None),
    F.hardtanh_: _hardtanh(True),
    F.leaky_relu: _leaky(None),
    F.leaky_relu_: _leaky(True),
    F.threshold: _threshold(None),
    torch.threshold: _threshold(False),
    torch.threshold_: _threshold(True),
    F.prelu: _prelu,
    torch.prelu: _prelu,
}

# ReLU-shaped clamps (lower bound exactly 0) are left alone: a clamp is as often
# preprocessing (x.clamp(0, 1) on the input) as an activation. Counted, so that a model
# whose only rectifiers are clamps raises instead of giving a zero attack direction.
_CLAMPS = {
    torch.clamp,
    torch.clip,
    torch.clamp_,
    torch.clip_,
    Tensor.clamp,
    Tensor.clip,
    Tensor.clamp_,
    Tensor.clip_,
    torch.clamp_min,
    torch.clamp_min_,
    Tensor.clamp_min,
    Tensor.clamp_min_,
}


class SoftplusSurrogate(TorchFunctionMode):
    """Inside the ``with`` block, every ReLU-like call computes its softplus smoothing.

    ``relu(x) → softplus_β(x) = log(1 + e^{βx}) / β``; leaky ReLU and PReLU with slope
    ``a``: ``softplus_β(x) − a · softplus_β(−x)``; ReLU6 and ``hardtanh(0, b)``:
    ``softplus_β(x) − softplus_β(x − b)``; ``threshold(0, 0)`` as ReLU. Module,
    functional, tensor-method and in-place calls alike (a reused module too): the mode
    sees every call of the forward pass, so the model's modules are never replaced.
    ``softplus_β → relu`` as ``β → ∞``, and its derivative ``sigmoid(βx)`` is the
    ReLU's step smoothed over ``~1/β``, so the surrogate's gradients have the second
    derivatives the attack needs (Ghorbani et al., 2019; Dombrowski et al., 2019).
    PyTorch's ``softplus`` is linear where ``βx > 20`` (its ``threshold``).

    Attributes
    ----------
    beta : float
    fired : int
        Calls rewritten (over every pass of the block).
    rewritten : Counter
        ``op -> count`` of the rewritten calls.
    clamps : int
        ReLU-shaped clamps (``clamp(min=0)`` and friends) seen and left alone.
    """

    def __init__(self, beta: float) -> None:
        super().__init__()
        self.beta = float(beta)
        self.fired = 0
        self.rewritten: Counter[str] = Counter()
        self.clamps = 0

    def __torch_function__(
        self,
        func: Any,
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        parse = _SMOOTHED.get(func)
        if parse is not None:
            call = parse(args, kwargs)
            if call is not None and isinstance(call.x, Tensor) and call.x.is_floating_point():
                self.fired += 1
                self.rewritten[call.op] += 1
                if not call.inplace:
                    return self.smooth(call.x, call.slope, call.upper)
                # in place: the smoothing of a copy, written back (x's old value may be
                # saved by softplus's backward, so it must not be the tensor overwritten)
                return call.x.copy_(self.smooth(call.x.clone(), call.slope, call.upper))
        elif func in _CLAMPS and _number(_arg(args, kwargs, 1, "min", None)) == 0.0:
            self.clamps += 1
        return func(*args, **kwargs)

    def smooth(self, x: Tensor, slope: Any = 0.0, upper: float | None = None) -> Tensor:
        """The softplus smoothing of ``relu(x) − slope · relu(−x)`` (or ``relu(x) −
        relu(x − upper)``)."""
        out = F.softplus(x, beta=self.beta)
        if upper is not None:
            return out - F.softplus(x - upper, beta=self.beta)
        if isinstance(slope, Tensor) or slope != 0.0:
            out = out - slope * F.softplus(-x, beta=self.beta)
        return out

    def check(self) -> None:
        """Raise when the block met rectifiers it left alone and rewrote none."""
        if self.fired == 0 and self.clamps:
            raise RuleNotAppliedError(
                f"the softplus surrogate found no ReLU-like activation to smooth, only "
                f"{self.clamps} clamp(min=0) calls, which it leaves alone (a clamp may be "
                "preprocessing); their second derivative is zero, so the attack would have "
                "no direction — write the activations as nn.ReLU / F.relu"
            )


# --------------------------------------------------------------------- the maps


def saliency(
    module: nn.Module,
    x: Tensor,
    classes: Tensor,
    method: str,
    *,
    ig_steps: int = IG_STEPS,
    create_graph: bool = False,
) -> tuple[Tensor, Tensor]:
    """The attribution map ``Σ_channels |·|`` ``(N, H, W)`` and the logits ``(N, K)``.

    ``x`` must require grad when ``create_graph`` (the map is then differentiable in
    ``x``). ``"gradient"``: ``∂ logit_c / ∂x``; ``"gradient_x_input"``: that times ``x``;
    ``"integrated_gradients"``: ``x`` times the mean gradient at ``(j / m) · x``,
    ``j = 1..m`` (right Riemann sum from the zero baseline). The logits are those at
    ``x`` (integrated gradients: the path's last point, ``x`` itself).
    """
    if not x.requires_grad:
        x = x.detach().requires_grad_(True)
    n = len(x)
    if method == "integrated_gradients":
        alphas = torch.arange(1, ig_steps + 1, dtype=x.dtype, device=x.device) / ig_steps
        points = (alphas.view(1, -1, 1, 1, 1) * x[:, None]).reshape(n * ig_steps, *x.shape[1:])
        logits = _checked(logits_of(module(points)), n * ig_steps, classes)
        score = logits.gather(1, classes.repeat_interleave(ig_steps)[:, None]).sum()
        if not score.requires_grad:
            raise InvalidInputError(_NO_GRADIENT)
        (grad,) = torch.autograd.grad(score, points, create_graph=create_graph)
        values = grad.view(n, ig_steps, *x.shape[1:]).mean(1) * x
        logits = logits.view(n, ig_steps, -1)[:, -1]
    else:
        logits = _checked(logits_of(module(x)), n, classes)
        score = logits.gather(1, classes[:, None]).sum()
        if not score.requires_grad:
            raise InvalidInputError(_NO_GRADIENT)
        (grad,) = torch.autograd.grad(score, x, create_graph=create_graph)
        values = grad * x if method == "gradient_x_input" else grad
    return values.abs().sum(1), logits


def _checked(logits: Tensor, rows: int, classes: Tensor) -> Tensor:
    """The logits, after checking their shape and that every class is one of them."""
    if logits.dim() != 2 or logits.shape[0] != rows:
        raise InvalidInputError(
            f"the model returned scores of shape {tuple(logits.shape)} for {rows} inputs; "
            "it must return (N, classes)"
        )
    if len(classes) and int(classes.max()) >= logits.shape[1]:
        raise TargetError(
            f"class {int(classes.max())} is out of range: the model has {logits.shape[1]} "
            f"classes (valid classes are 0 to {logits.shape[1] - 1})"
        )
    return logits


_NO_GRADIENT = (
    "the model's output has no gradient with respect to its input (does its forward detach "
    "the input, round it, call .numpy() or run under torch.no_grad()?); the fragility "
    "attack needs a differentiable model"
)


_NO_DIRECTION = (
    "the attack has no direction: the surrogate found no ReLU-like activation to smooth and "
    "the map's gradient with respect to the input is zero. Either the model's rectifiers "
    "are hidden from Python (TorchScript, a compiled or exported model: pass the eager "
    "nn.Module) or the map does not depend on the input (a linear model's gradient: "
    "nothing to attack)"
)


def _top_k(maps: Tensor, k: int) -> Tensor:
    """``(N, H·W)`` bool: each map's ``k`` largest pixels (ties: the lower index first)."""
    flat = maps.reshape(len(maps), -1)
    order = torch.sort(flat, dim=1, descending=True, stable=True).indices[:, :k]
    return torch.zeros_like(flat, dtype=torch.bool).scatter_(1, order, True)


def _intersection(before: Tensor, after: Tensor, k: int) -> Tensor:
    return (before & after).sum(1).to(torch.float64) / k


def _spearman(a: Tensor, b: Tensor) -> Tensor:
    """``(N,)`` Spearman's ρ of each pair of maps (average ranks; NaN for a constant map)."""
    x = a.detach().reshape(len(a), -1).to("cpu", torch.float64).numpy()
    y = b.detach().reshape(len(b), -1).to("cpu", torch.float64).numpy()
    rx = scipy_stats.rankdata(x, axis=1) - (x.shape[1] + 1) / 2
    ry = scipy_stats.rankdata(y, axis=1) - (y.shape[1] + 1) / 2
    denominator = np.sqrt((rx * rx).sum(1) * (ry * ry).sum(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = (rx * ry).sum(1) / denominator
    rho = np.where(denominator > 0, np.clip(rho, -1.0, 1.0), np.nan)
    return torch.from_numpy(rho)


# --------------------------------------------------------------------- results


@dataclass(frozen=True)
class FragilitySettings:
    """How :func:`fragility` ran, resolved. ``step_size`` is in the units of ``eps``;
    ``ig_steps`` is None unless the method is integrated gradients; ``valid_low`` /
    ``valid_high`` the valid range per channel in input units (None: not clipped);
    ``pixel_std`` the per-channel factor from input to pixel units (``eps_space="pixels"``);
    ``seeds`` the random baseline's seeds of the first and last row; ``rewritten``: the
    ReLU-like calls the surrogate smoothed, ``op -> calls per forward pass``."""

    method: str
    eps: float
    eps_space: str
    steps: int
    step_size: float
    top_k: int
    beta: float
    ig_steps: int | None
    random_baseline: bool
    seeds: tuple[int, int]
    valid_low: tuple[float, ...] | None
    valid_high: tuple[float, ...] | None
    pixel_std: tuple[float, ...] | None
    rewritten: tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class FragilityResult:
    """What the top-k attack did to each image's explanation, and what random noise did.

    Attributes
    ----------
    adversarial : Tensor
        ``(N, C, H, W)``: the kept image (the clean image where no iterate lowered the
        intersection); inside the ε-ball and the valid range.
    top_k_intersection : Tensor
        ``(N,)`` float64: the fraction of the clean map's top-k pixels still among the
        adversarial map's top-k (1: unmoved).
    spearman : Tensor
        ``(N,)`` float64: Spearman's ρ between the clean and the adversarial map.
    label_kept : Tensor
        ``(N,)`` bool: the model predicts the clean prediction on ``adversarial`` (True by
        construction).
    classes : Tensor
        ``(N,)`` the class each map explains (``labels`` or the clean prediction).
    predicted : Tensor
        ``(N,)`` the clean prediction.
    maps, adversarial_maps : Tensor
        ``(N, H, W)``: the real model's maps (``Σ_c |·|``, not normalised) of the clean
        and of the kept image.
    norms : Tensor
        ``(N,)`` the perturbation's L∞ size, in the units of ``eps``.
    random_top_k_intersection, random_spearman : Tensor or None
        ``(N,)`` the same for one random sign perturbation of size ε (None without the
        baseline).
    random_label_kept : Tensor or None
        ``(N,)`` bool: the noise left the prediction unchanged (not required).
    settings : FragilitySettings
    n, median_intersection, median_spearman, median_random_intersection,
    median_random_spearman, random_changed, p_value
        Derived: rows; medians (NaN ignored; None without the baseline); the images
        whose prediction the noise changed; the two-sided
        paired sign-flip p-value (:func:`seethrough.core.stats.paired_test`, 10,000
        flips seeded ``settings.seeds[0]``, exact up to 16 rows) that the attack's and
        the noise's intersections have the same mean (None without the baseline).
    """

    adversarial: Tensor = field(repr=False)
    top_k_intersection: Tensor
    spearman: Tensor
    label_kept: Tensor
    classes: Tensor
    predicted: Tensor
    maps: Tensor = field(repr=False)
    adversarial_maps: Tensor = field(repr=False)
    norms: Tensor
    random_top_k_intersection: Tensor | None
    random_spearman: Tensor | None
    random_label_kept: Tensor | None
    settings: FragilitySettings
    n: int = field(init=False)
    median_intersection: float = field(init=False)
    median_spearman: float = field(init=False)
    median_random_intersection: float | None = field(init=False)
    median_random_spearman: float | None = field(init=False)
    random_changed: int | None = field(init=False)
    p_value: float | None = field(init=False)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "n", int(self.top_k_intersection.numel()))
        set_(self, "median_intersection", _median(self.top_k_intersection))
        set_(self, "median_spearman", _median(self.spearman))
        random = self.random_top_k_intersection
        set_(self, "median_random_intersection", None if random is None else _median(random))
        rho = self.random_spearman
        set_(self, "median_random_spearman", None if rho is None else _median(rho))
        kept = self.random_label_kept
        set_(self, "random_changed", None if kept is None else int((~kept).sum()))
        p = None
        if random is not None:
            a = self.top_k_intersection.double().cpu().numpy()
            b = random.double().cpu().numpy()
            p = paired_test(a, b, seed=self.settings.seeds[0])
        set_(self, "p_value", p)

    def describe(self) -> Description:
        """The attack and the baseline in words (English and Chinese: ``.text("zh")``)."""
        s = self.settings
        values: dict[str, Value] = {
            "method": Term(f"method.{s.method}"),
            "eps": s.eps,
            "space": Term(f"robust.space.{s.eps_space}"),
            "steps": s.steps,
            "k": s.top_k,
            "n": self.n,
            "kept": self.median_intersection,
            "rho": self.median_spearman,
        }
        found = [Finding("robust.fragility.attack", values, "top_k_intersection", "note")]
        if self.median_random_intersection is not None and self.p_value is not None:
            assert self.median_random_spearman is not None
            more = self.p_value < ALPHA and self.median_intersection < (
                self.median_random_intersection
            )
            claim: Claim = "finding" if more else "hedged"
            random: dict[str, Value] = {
                "k": s.top_k,
                "kept": self.median_intersection,
                "random": self.median_random_intersection,
                "rho": self.median_random_spearman,
                "p": self.p_value,
                "changed": self.random_changed if self.random_changed is not None else 0,
            }
            key = "robust.fragility.random." + ("more" if more else "not_more")
            found.append(Finding(key, random, "random_top_k_intersection", claim))
        return Description("fragility", tuple(found))


def _median(values: Tensor) -> float:
    array = values.detach().double().cpu().numpy()
    finite = array[np.isfinite(array)]
    return float(np.median(finite)) if finite.size else math.nan


# --------------------------------------------------------------------- the attack


def fragility(
    model: Any,
    inputs: Tensor,
    *,
    eps: float,
    method: str = "gradient",
    steps: int = STEPS,
    step_size: float | None = None,
    top_k: int = TOP_K,
    beta: float = BETA,
    ig_steps: int = IG_STEPS,
    eps_space: str = "input",
    valid_range: tuple[Any, Any] | None = None,
    labels: Any = None,
    random_baseline: bool = True,
    seed: int | Sequence[int] = 0,
    batch_size: int | None = None,
    progress: Progress | None = None,
) -> FragilityResult:
    """The iterative top-k attack on explanations (Ghorbani, Abid & Zou, 2019).

    Moves each image inside the L∞ ε-ball and the valid range so that its map's mass
    leaves the clean map's top-k pixels while the prediction stays the same; the
    algorithm, the surrogate, the baseline and every deviation from the paper are in the
    module docstring.

    Parameters
    ----------
    model, inputs, eps_space, valid_range, batch_size, progress
        As for :func:`seethrough.robust.pgd` (module docstring of
        :mod:`seethrough.robust.attacks`): a model in eval mode (or a ``LoadedModel``,
        which gives the valid range and the pixel scale), ``(N, C, H, W)`` inputs as the
        model expects them.
    eps : float
        The L∞ radius (≥ 0), in the units of ``eps_space``.
    method : {"gradient", "gradient_x_input", "integrated_gradients"}
        The map attacked and measured.
    steps : int
        Sign steps (≥ 1; default :data:`STEPS`).
    step_size : float, optional
        α in the units of ``eps``; default ``2.5 · eps / steps``.
    top_k : int
        k (≥ 1, < H·W; default :data:`TOP_K`).
    beta : float
        β of the softplus surrogate (> 0; default :data:`BETA`).
    ig_steps : int
        Path points of integrated gradients (default :data:`IG_STEPS`).
    labels : optional
        ``(N,)`` the class each map explains (indices, or names with a ``LoadedModel``);
        default: the clean prediction.
    random_baseline : bool
        Also measure one random ±ε sign perturbation per image (default True).
    seed : int or sequence of int
        The random baseline's seed of row ``i`` is ``seed + i`` (or ``seed[i]``); the
        attack itself draws nothing.

    Returns
    -------
    FragilityResult

    Raises
    ------
    InvalidOptionError
        An unknown ``method`` or ``eps_space`` (with the valid ones), ``eps < 0``, steps,
        ``top_k``, ``ig_steps`` < 1, ``top_k ≥ H·W``, ``beta ≤ 0``, a bad ``step_size`` or
        ``valid_range``.
    InvalidInputError, TargetError
        Bad inputs (outside the valid range, not a batch), labels of the wrong length or
        out of range, a model whose output has no gradient with respect to its input.
    ModelStateError
        The model is in training mode.
    RuleNotAppliedError
        The attack has no direction: the model's only rectifiers are clamps, which the
        surrogate leaves alone, or hidden from Python (TorchScript), or the map does not
        depend on the input.
    NonFiniteError
        The model's scores or maps became NaN or infinite.
    """
    module, names, preprocess = unwrap_model(model)
    method = _check_choice("method", method, FRAGILITY_METHODS)
    eps_space = _check_choice("eps_space", eps_space, EPS_SPACES)
    eps = _check_number("eps", eps)
    steps = _check_count("steps", steps)
    ig_steps = _check_count("ig_steps", ig_steps)
    top_k = _check_count("top_k", top_k)
    beta = _check_number("beta", beta, positive=True)
    step = (
        STEP_FACTOR * eps / steps
        if step_size is None
        else _check_number("step_size", step_size, positive=True)
    )
    x = check_inputs(inputs, module)
    features = x.shape[2] * x.shape[3]
    if top_k >= features:
        raise InvalidOptionError(
            f"top_k = {top_k} but the maps have only {features} pixels ({x.shape[2]} × "
            f"{x.shape[3]}); k must be smaller (the paper: 100 of 32 × 32, 1000 of 227 × 227)"
        )
    n = len(x)
    seeds = _row_seeds(seed, n)
    with guarded(module, devices=[x.device]):  # also lifts a caller's inference mode
        classes, _ = _attack_classes(
            "true" if labels is not None else None, labels, n, names, x.device
        )
        with warnings.catch_warnings(record=True) as caught:  # re-raised at the caller
            warnings.simplefilter("always")
            box = _valid_box(valid_range, preprocess, x)
        for warning in caught:
            warnings.warn(warning.message, warning.category, stacklevel=2)
        x = _check_in_range(x, box)
        geometry = _Geometry("linf", eps, step, _pixel_scale(eps_space, preprocess, x), box)
        attack = _Attack(module, method, top_k, SoftplusSurrogate(beta), ig_steps, geometry)
        out = attack.run(x, classes, seeds, steps, random_baseline, batch_size, progress)
    low, high = box.as_tuples()
    passes = max(1, attack.surrogate_passes)
    settings = FragilitySettings(
        method=method,
        eps=eps,
        eps_space=eps_space,
        steps=steps,
        step_size=step,
        top_k=top_k,
        beta=beta,
        ig_steps=ig_steps if method == "integrated_gradients" else None,
        random_baseline=bool(random_baseline),
        seeds=(seeds[0], seeds[-1]),
        valid_low=low,
        valid_high=high,
        pixel_std=None if geometry.scale is None else tuple(geometry.scale.reshape(-1).tolist()),
        rewritten=tuple(
            (op, count // passes) for op, count in sorted(attack.surrogate.rewritten.items())
        ),
    )
    return FragilityResult(**out, settings=settings)


@dataclass
class _Attack:
    """One :func:`fragility` call: the passes of the real model and of the surrogate."""

    module: nn.Module
    method: str
    top_k: int
    surrogate: SoftplusSurrogate
    ig_steps: int
    geometry: _Geometry
    surrogate_passes: int = 0  # forward passes through the surrogate (calls per pass)

    def real(self, x: Tensor, classes: Tensor) -> tuple[Tensor, Tensor]:
        """The real model's maps and predictions on ``x`` (no graph kept)."""
        maps, logits = saliency(self.module, x, classes, self.method, ig_steps=self.ig_steps)
        if not bool(torch.isfinite(logits).all()) or not bool(torch.isfinite(maps).all()):
            raise NonFiniteError(
                "the model's scores or maps on the attacked images are NaN or infinite; "
                "check the model's numerics and the valid range"
            )
        return maps.detach(), logits.detach().argmax(1)

    def direction(self, x: Tensor, classes: Tensor, top: Tensor) -> Tensor:
        """``∇ D`` of the surrogate's normalised map, ``D = −Σ_{top} I``."""
        x = x.detach().requires_grad_(True)
        with self.surrogate:
            maps, _ = saliency(
                self.module, x, classes, self.method, ig_steps=self.ig_steps, create_graph=True
            )
        self.surrogate_passes += 1
        self.surrogate.check()
        flat = maps.reshape(len(x), -1)
        share = flat / (flat.sum(1, keepdim=True) + _NORMALISE_EPS)
        dissimilarity = -(share * top).sum()
        grad = None
        if dissimilarity.requires_grad:
            (grad,) = torch.autograd.grad(dissimilarity, x, allow_unused=True)
        if grad is None or (self.surrogate.fired == 0 and not bool(grad.any())):
            raise RuleNotAppliedError(_NO_DIRECTION)
        return grad

    def rows(
        self, x: Tensor, classes: Tensor | None, seeds: list[int], steps: int, random: bool
    ) -> dict[str, Tensor | None]:
        """One chunk of rows: the attack, then the baseline."""
        if classes is None:
            with torch.no_grad():
                classes = logits_of(self.module(x)).argmax(1)
        maps, predicted = self.real(x, classes)
        top = _top_k(maps, self.top_k)
        best, best_maps = x.clone(), maps.clone()
        best_inter = torch.ones(len(x), dtype=torch.float64, device=x.device)
        adv = x
        for _ in range(steps):
            grad = self.direction(adv, classes, top)
            adv = self.geometry.step_from(adv.detach(), grad, x).detach()
            adv_maps, adv_pred = self.real(adv, classes)
            inter = _intersection(top, _top_k(adv_maps, self.top_k), self.top_k)
            better = (adv_pred == predicted) & (inter < best_inter)
            best[better], best_maps[better] = adv[better], adv_maps[better]
            best_inter = torch.where(better, inter, best_inter)
        _, best_pred = self.real(best, classes)
        out: dict[str, Tensor | None] = {
            "adversarial": best,
            "top_k_intersection": best_inter,
            "spearman": _spearman(maps, best_maps).to(x.device),
            "label_kept": best_pred == predicted,
            "classes": classes,
            "predicted": predicted,
            "maps": maps,
            "adversarial_maps": best_maps,
            "norms": self.geometry.size(best - x).to(torch.float64),
        }
        if random:
            noisy = self.noise(x, seeds)
            noisy_maps, noisy_pred = self.real(noisy, classes)
            out["random_top_k_intersection"] = _intersection(
                top, _top_k(noisy_maps, self.top_k), self.top_k
            )
            out["random_spearman"] = _spearman(maps, noisy_maps).to(x.device)
            out["random_label_kept"] = noisy_pred == predicted
        return out

    def noise(self, x: Tensor, seeds: list[int]) -> Tensor:
        """``x ± ε`` per value (pixel units: ``± ε / std_c``), signs seeded per row,
        drawn on the CPU; clipped to the valid range."""
        signs = [
            torch.randint(0, 2, (1, *x.shape[1:]), generator=torch.Generator().manual_seed(s))
            for s in seeds
        ]
        sign = (torch.cat(signs).to(x.dtype) * 2 - 1).to(x.device)
        return self.geometry.box.clip(x + self.geometry.per_input(self.geometry.eps) * sign)

    def run(
        self,
        x: Tensor,
        classes: Tensor | None,
        seeds: list[int],
        steps: int,
        random: bool,
        batch_size: int | None,
        progress: Progress | None,
    ) -> dict[str, Any]:
        """Every chunk of rows through :meth:`rows`; the result's tensors."""
        n = len(x)
        budget = Budget(batch_size, device=x.device, layout="contiguous")
        budget.report_to(progress, n)
        parts: list[dict[str, Tensor | None]] = []

        def step_rows(start: int, stop: int) -> None:
            cls = None if classes is None else classes[start:stop]
            parts.append(self.rows(x[start:stop], cls, seeds[start:stop], steps, random))

        budget.run(n, step_rows)
        keys = parts[0].keys()
        joined: dict[str, Any] = {}
        for key in keys:
            pieces = [p[key] for p in parts]
            joined[key] = None if pieces[0] is None else torch.cat(pieces)  # type: ignore[arg-type]
        for key in ("random_top_k_intersection", "random_spearman", "random_label_kept"):
            joined.setdefault(key, None)
        return joined

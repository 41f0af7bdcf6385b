"""Surrogate methods on superpixels: LIME and KernelSHAP.

Both explain a row by switching *features* (superpixels) on and off: a coalition
``z ∈ {0, 1}^F`` keeps the pixels of the features with ``z_j = 1`` and replaces the
others with a baseline; the model scores each perturbed image, and a weighted linear
surrogate fitted to ``(z, score)`` gives one weight per feature. Each pixel's
attribution is its feature's weight, on every channel (a tensor shaped like the input).

* ``lime`` — Ribeiro, Singh & Guestrin (2016), "Why Should I Trust You?": a weighted
  ridge regression with intercept, weights from an exponential kernel on the cosine
  distance between ``z`` and the all-ones coalition (the ``lime`` package's choice).
* ``kernel_shap`` — Lundberg & Lee (2017), "A Unified Approach to Interpreting Model
  Predictions": Shapley-kernel weighted least squares with the efficiency constraint
  ``Σ φ = f(x) − f(baseline)`` enforced exactly (as ``shap``'s KernelExplainer does, by
  eliminating one variable); all ``2^F`` coalitions when they fit in ``samples``.

Perturbed images are made chunk by chunk inside the shared budget, never all at once.
The surrogate fits are tiny (``samples × F``) and run on the CPU in float64.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from ..core.baselines import BaselineLike, make_baseline
from ..core.passes import forward_scores
from ..core.targets import Target
from ..errors import (
    InvalidInputError,
    InvalidOptionError,
    instance_of,
    integer,
    number,
    one_of,
    option,
)
from .explanation import Details, Explanation
from .method import Attribution, Method, register
from .run import PassContext

__all__ = [
    "BASELINES",
    "SEGMENTERS",
    "CoalitionRows",
    "KernelShap",
    "KernelShapDetails",
    "KernelShapExplanation",
    "Lime",
    "LimeDetails",
    "LimeExplanation",
    "SuperpixelMethod",
    "constrained_shapley_fit",
    "removal_baselines",
    "segment_images",
    "shapley_coalitions",
    "weighted_ridge",
]

SEGMENTERS = ("slic", "quickshift", "felzenszwalb")
BASELINES = ("zeros", "mean", "blur")


# ---------------------------------------------------------------- explanations


@dataclass(frozen=True, eq=False, kw_only=True)
class LimeDetails(Details):
    """LIME's surrogate: see :class:`LimeExplanation`."""

    segments: Tensor
    feature_counts: Tensor
    feature_weights: Tensor
    intercept: Tensor
    fit_r2: Tensor


@dataclass(frozen=True, eq=False, kw_only=True)
class LimeExplanation(Explanation, LimeDetails):
    """LIME, with its surrogate.

    ``segments`` ``(N, H, W)`` holds each pixel's feature id (``0 … F_i − 1``);
    ``feature_weights`` ``(N, F)`` the ridge coefficients (``F = max F_i``, NaN past a
    row's own ``feature_counts``); ``intercept`` ``(N,)``; ``fit_r2`` ``(N,)`` the
    weighted R² of the surrogate on its samples (NaN when the scores do not vary).
    """


@dataclass(frozen=True, eq=False, kw_only=True)
class KernelShapDetails(Details):
    """KernelSHAP's values per feature: see :class:`KernelShapExplanation`."""

    segments: Tensor
    feature_counts: Tensor
    feature_values: Tensor
    base_value: Tensor
    efficiency_error: Tensor
    exact: Tensor


@dataclass(frozen=True, eq=False, kw_only=True)
class KernelShapExplanation(Explanation, KernelShapDetails):
    """KernelSHAP, with its Shapley values per feature.

    ``feature_values`` ``(N, F)`` (NaN past ``feature_counts``); ``base_value`` ``(N,)``
    is the score of the all-off image ``f(baseline)``; ``efficiency_error`` ``(N,)`` is
    ``Σ φ − (f(x) − f(baseline))``, zero to rounding; ``exact`` ``(N,)`` marks rows
    whose ``2^F`` coalitions were all enumerated (exact Shapley values).
    """


# ---------------------------------------------------------------- feature layer


def _relabel(mask: Tensor) -> Tensor:
    """Feature ids ``0 … F − 1`` in the order of the mask's distinct values."""
    return torch.unique(mask, return_inverse=True)[1].reshape(mask.shape)


def _skimage_segments(
    image: Tensor, algorithm: str, n_segments: int, compactness: float, options: Mapping[str, Any]
) -> np.ndarray:
    """Superpixels of one ``(C, H, W)`` image, min-max rescaled to [0, 1] first."""
    from skimage import segmentation

    array = image.detach().to("cpu", torch.float64).permute(1, 2, 0).numpy()
    low, high = array.min(), array.max()
    array = (array - low) / (high - low) if high > low else np.zeros_like(array)
    if algorithm == "slic":
        kwargs = {"n_segments": n_segments, "compactness": compactness, "start_label": 0}
        return segmentation.slic(array, channel_axis=-1, **{**kwargs, **options})
    if algorithm == "quickshift":
        kwargs = {"kernel_size": 4, "max_dist": 200, "ratio": 0.2}  # lime's defaults
        kwargs["convert2lab"] = array.shape[2] == 3
        return segmentation.quickshift(array, channel_axis=-1, **{**kwargs, **options})
    return segmentation.felzenszwalb(array, channel_axis=-1, **dict(options))


def segment_images(
    x: Tensor,
    segments: str | Tensor,
    n_segments: int = 50,
    compactness: float = 10.0,
    options: Mapping[str, Any] | None = None,
) -> Tensor:
    """Feature ids ``(N, H, W)`` (long, on ``x``'s device), ``0 … F_i − 1`` per image.

    ``segments`` is ``"slic"``, ``"quickshift"``, ``"felzenszwalb"`` (scikit-image, on
    each image min-max rescaled to [0, 1] — the inputs are normalised tensors, not
    0–255 photos), or an integer mask ``(N, H, W)`` or ``(H, W)``, whose distinct values
    are renumbered ``0 … F − 1`` in increasing order.
    """
    n, _, h, w = x.shape
    if isinstance(segments, Tensor):
        if segments.shape not in ((h, w), (n, h, w)):
            raise InvalidInputError(
                f"a segment mask must have shape ({h}, {w}) or ({n}, {h}, {w}); "
                f"got {tuple(segments.shape)}"
            )
        mask = segments.to(x.device).long().expand(n, h, w)
        return torch.stack([_relabel(m) for m in mask])
    found = [
        _skimage_segments(image, segments, n_segments, compactness, options or {}) for image in x
    ]
    return torch.stack([_relabel(torch.as_tensor(f)) for f in found]).to(x.device)


def removal_baselines(x: Tensor, baseline: BaselineLike) -> Tensor:
    """What a switched-off feature's pixels become, ``(N, C, H, W)``.

    ``"zeros"``; ``"mean"`` — each image's per-channel mean; ``"blur"`` — a Gaussian blur
    of the image, σ = 1/16 of the shorter side (at least 1 pixel), the kernel reaching
    ``⌊3σ⌋`` pixels; a number; or a tensor broadcastable to the inputs (see
    :func:`~seethrough.core.baselines.make_baseline`).
    """
    sigma = max(1.0, min(x.shape[2:]) / 16)
    return make_baseline(baseline, x, kinds=BASELINES, blur_sigma=sigma, blur_radius=int(3 * sigma))


class CoalitionRows:
    """Perturbed images as rows ``(start, stop)``, made on demand.

    Image ``i`` owns rows ``offsets[i] : offsets[i + 1]``; its row ``r`` keeps the
    pixels of the features switched on in ``coalitions[i][r]`` and takes the baseline
    elsewhere.
    """

    def __init__(
        self, x: Tensor, baselines: Tensor, segments: Tensor, coalitions: list[Tensor]
    ) -> None:
        self.x, self.baselines, self.segments, self.coalitions = x, baselines, segments, coalitions
        sizes = torch.tensor([len(z) for z in coalitions])
        self.offsets = [0, *torch.cumsum(sizes, 0).tolist()]

    @property
    def total(self) -> int:
        return int(self.offsets[-1])

    def image_of_rows(self) -> Tensor:
        """``(total,)``: the image each row belongs to."""
        sizes = torch.tensor([len(z) for z in self.coalitions], device=self.x.device)
        return torch.repeat_interleave(torch.arange(len(self.x), device=self.x.device), sizes)

    def __call__(self, start: int, stop: int) -> Tensor:
        parts = []
        for image in range(len(self.x)):
            first = max(start, self.offsets[image])
            last = min(stop, self.offsets[image + 1])
            if first >= last:
                continue
            z = self.coalitions[image][first - self.offsets[image] : last - self.offsets[image]]
            keep = z.bool()[:, self.segments[image]].unsqueeze(1)  # (b, 1, H, W)
            parts.append(torch.where(keep, self.x[image], self.baselines[image]))
        return torch.cat(parts)


def evaluate_coalitions(
    ctx: PassContext,
    x: Tensor,
    target: Target,
    baselines: Tensor,
    segments: Tensor,
    coalitions: list[Tensor],
) -> list[Tensor]:
    """The target score of every coalition of every image (float64, CPU), one
    budgeted no-grad pass; ``target`` must be resolved (one class per row of ``x``)."""
    rows = CoalitionRows(x, baselines, segments, coalitions)
    image = rows.image_of_rows()
    if target.indices is not None:
        target = target.fixed(target.indices[image.to(target.indices.device)])
    scores, _ = forward_scores(ctx.model, rows, rows.total, target, ctx.budget)
    scores = scores.detach().to("cpu", torch.float64)
    return list(scores.split([len(z) for z in coalitions]))


# ---------------------------------------------------------------- surrogate fits


def _weighted_lstsq(a: Tensor, y: Tensor, w: Tensor) -> Tensor:
    """argmin_β Σ w (y − a β)² (minimum-norm where rank-deficient)."""
    root = w.sqrt()
    return torch.linalg.lstsq(a * root[:, None], (y * root)[:, None], driver="gelsd").solution[:, 0]


def weighted_ridge(z: Tensor, y: Tensor, w: Tensor, alpha: float) -> tuple[Tensor, Tensor, Tensor]:
    """Weighted ridge regression with an unpenalised intercept, in closed form.

    Minimises ``Σ wᵢ (yᵢ − b − zᵢ·β)² + α ‖β‖²`` (scikit-learn's ``Ridge`` with
    ``sample_weight``): centre by the weighted means, solve, recover ``b``.

    Returns
    -------
    coef ``(F,)``, intercept ``()``, weighted R² ``()`` (NaN when ``y`` is constant).
    """
    z, y, w = z.double(), y.double(), w.double()
    if not bool(torch.isfinite(y).all()):  # a NaN score (explain(nonfinite="warn")): no fit
        nan = torch.tensor(float("nan"), dtype=z.dtype)
        return torch.full((z.shape[1],), float("nan"), dtype=z.dtype), nan, nan
    total = w.sum()
    z_mean, y_mean = (w[:, None] * z).sum(0) / total, (w * y).sum() / total
    zc, yc = z - z_mean, y - y_mean
    features = z.shape[1]
    penalty = math.sqrt(alpha) * torch.eye(features, dtype=z.dtype)
    a = torch.cat([zc * w.sqrt()[:, None], penalty])
    b = torch.cat([yc * w.sqrt(), torch.zeros(features, dtype=z.dtype)])
    coef = torch.linalg.lstsq(a, b[:, None], driver="gelsd").solution[:, 0]
    intercept = y_mean - z_mean @ coef
    residual = (w * (y - intercept - z @ coef) ** 2).sum()
    spread = (w * yc**2).sum()
    r2 = 1 - residual / spread if spread > 0 else torch.tensor(float("nan"), dtype=z.dtype)
    return coef, intercept, r2


def constrained_shapley_fit(z: Tensor, y: Tensor, w: Tensor, v0: Tensor, v1: Tensor) -> Tensor:
    """Shapley values ``φ`` ``(F,)``: argmin Σ w (y − v0 − z·φ)² subject to
    ``Σ φ = v1 − v0``, by eliminating the last feature (as ``shap`` does)."""
    z, y, w = z.double(), y.double(), w.double()
    delta = v1 - v0
    if not bool(torch.isfinite(y).all() and torch.isfinite(delta)):  # see weighted_ridge
        return torch.full((z.shape[1],), float("nan"), dtype=z.dtype)
    if z.shape[1] == 1:
        return delta.reshape(1)
    a = z[:, :-1] - z[:, -1:]
    free = _weighted_lstsq(a, y - v0 - z[:, -1] * delta, w)
    return torch.cat([free, (delta - free.sum()).reshape(1)])


# ---------------------------------------------------------------- coalitions


def lime_coalitions(features: int, samples: int, generator: torch.Generator) -> Tensor:
    """``samples`` coalitions, each feature on with probability ½; the first is the
    unperturbed image (all on), as in the ``lime`` package."""
    device = generator.device
    z = torch.rand(samples, features, generator=generator, device=device) < 0.5
    z[0] = True
    return z.to(torch.float64)


def shapley_kernel(features: int, size: Tensor) -> Tensor:
    """The Shapley kernel ``(F − 1) / (C(F, k) · k · (F − k))`` for coalition sizes ``k``."""
    k = size.double()
    log_binom = math.lgamma(features + 1) - torch.lgamma(k + 1) - torch.lgamma(features - k + 1)
    return (features - 1) / (torch.exp(log_binom) * k * (features - k))


def shapley_coalitions(
    features: int, samples: int, generator: torch.Generator
) -> tuple[Tensor, Tensor, bool]:
    """The design of KernelSHAP: ``(coalitions, weights, exact)``.

    The first two rows are the all-on and all-off coalitions (for ``f(x)`` and
    ``f(baseline)``, weight 0). When ``2^F ≤ samples`` every other coalition follows,
    weighted by the Shapley kernel (exact Shapley values). Otherwise ``samples − 2``
    rows (rounded down to even) in antithetic pairs ``z, 1 − z``: the size ``k`` is drawn
    ∝ the kernel's mass at ``k``, ``(F − 1) / (k (F − k))``, the members uniformly; each
    row then has weight 1.
    """
    device = generator.device
    ends = torch.stack([torch.ones(features), torch.zeros(features)]).double().to(device)
    if features < 63 and 2**features <= samples:
        codes = torch.arange(1, 2**features - 1, device=device)
        z = ((codes[:, None] >> torch.arange(features, device=device)) & 1).double()
        weights = shapley_kernel(features, z.sum(1).cpu())
        return torch.cat([ends, z]), torch.cat([torch.zeros(2), weights]), True
    pairs = (samples - 2) // 2
    sizes = torch.arange(1, features, device=device)
    mass = (features - 1) / (sizes * (features - sizes)).double()
    k = sizes[torch.multinomial(mass, pairs, replacement=True, generator=generator)]
    ranks = torch.rand(pairs, features, generator=generator, device=device).argsort(1).argsort(1)
    z = (ranks < k[:, None]).double()
    paired = torch.stack([z, 1 - z], dim=1).reshape(2 * pairs, features)
    weights = torch.cat([torch.zeros(2), torch.ones(2 * pairs)]).double()
    return torch.cat([ends, paired]), weights, False


def _padded(values: list[Tensor], dtype: torch.dtype, device: torch.device) -> Tensor:
    """Rows of different lengths as ``(N, max length)``, NaN-padded."""
    width = max(len(v) for v in values)
    out = torch.full((len(values), width), float("nan"), dtype=dtype)
    for i, v in enumerate(values):
        out[i, : len(v)] = v
    return out.to(device)


def _feature_map(x: Tensor, segments: Tensor, values: list[Tensor]) -> Tensor:
    """Each pixel gets its feature's value, on every channel: ``(N, C, H, W)``."""
    maps = [v.to(x.device, x.dtype)[s] for v, s in zip(values, segments)]
    return torch.stack(maps).unsqueeze(1).expand_as(x).contiguous()


# ---------------------------------------------------------------- methods


@dataclass(frozen=True, kw_only=True)
class SuperpixelMethod(Method):
    """The options shared by the superpixel surrogates (the feature layer).

    Parameters
    ----------
    samples : int
        Model evaluations per row, the unperturbed/endpoint coalitions included.
    segments : str or Tensor
        ``"slic"`` (default), ``"quickshift"``, ``"felzenszwalb"``, or an integer mask
        ``(N, H, W)`` / ``(H, W)`` of feature ids; see :func:`segment_images`.
    n_segments, compactness : int, float
        SLIC's target number of superpixels (default 50) and compactness (default 10).
    segment_options : Mapping
        Further keyword arguments for the scikit-image segmenter.
    baseline : str, float or Tensor
        What switched-off features become: ``"zeros"`` (default, Captum's), ``"mean"``,
        ``"blur"``, a number or a tensor; see :func:`removal_baselines`.

    Segmentation is deterministic; every random draw of row ``i`` comes from
    ``ctx.generator(i)``.
    """

    samples: int = option(1000, check=integer(at_least=2))
    segments: str | Tensor = option(
        "slic", check=one_of(*SEGMENTERS) | instance_of(Tensor, "an integer mask tensor")
    )
    n_segments: int = option(50, check=integer(at_least=1))
    compactness: float = option(10.0, check=number())
    segment_options: Mapping[str, Any] = option(
        factory=dict, check=instance_of(Mapping, "a mapping of keyword arguments")
    )
    baseline: BaselineLike = option(
        "zeros", check=one_of(*BASELINES) | number() | instance_of(Tensor, "a tensor")
    )

    def validate(self) -> None:
        if isinstance(self.segments, Tensor) and (
            self.segments.dtype.is_floating_point or self.segments.dtype == torch.bool
        ):
            raise InvalidOptionError("a segment mask must be an integer tensor of feature ids")

    def planned_rows(self, n: int) -> int:
        return n * (self.samples + 1)

    def feature_layer(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Segments ``(N, H, W)`` and removal baselines ``(N, C, H, W)``."""
        segments = segment_images(
            x, self.segments, self.n_segments, self.compactness, self.segment_options
        )
        return segments, removal_baselines(x, self.baseline)


@register
@dataclass(frozen=True, kw_only=True)
class Lime(SuperpixelMethod):
    """LIME on superpixels (Ribeiro et al., 2016).

    Parameters
    ----------
    samples, segments, n_segments, compactness, segment_options, baseline
        See :class:`SuperpixelMethod`; ``samples`` defaults to 1000.
    kernel_width : float
        Width of the sample-weight kernel ``exp(−d² / (2 w²))`` on the cosine distance
        ``d = 1 − √(k/F)`` between a coalition with ``k`` features on and the all-on one
        (default 0.25, the ``lime`` package's ``sqrt(exp(−d²/w²))``). Captum's default
        instead measures the distance between images, with width 1.
    alpha : float
        Ridge penalty on the coefficients (default 1.0, the ``lime`` package's).

    Row ``i``'s coalitions are Bernoulli(½) from ``ctx.generator(i)``; the first keeps
    every feature. Attributions are the ridge coefficients painted on their superpixels.
    """

    kernel_width: float = option(0.25, check=number(above=0))
    alpha: float = option(1.0, check=number(at_least=0))

    name: ClassVar[str] = "lime"
    result_type: ClassVar[type[Explanation]] = LimeExplanation

    def similarity(self, z: Tensor) -> Tensor:
        """Sample weights of coalitions ``z`` ``(S, F)``."""
        distance = 1 - (z.sum(1) / z.shape[1]).sqrt()
        return torch.exp(-(distance**2) / (2 * self.kernel_width**2))

    def attribute_rows(self, ctx: PassContext, x: Tensor, target: Target) -> Attribution:
        target, scores, predicted = ctx.resolve(x, target)
        segments, baselines = self.feature_layer(x)
        counts = [int(s.max()) + 1 for s in segments]
        coalitions = [
            lime_coalitions(f, self.samples, ctx.generator(i)) for i, f in enumerate(counts)
        ]
        outputs = evaluate_coalitions(ctx, x, target, baselines, segments, coalitions)
        fits = [
            weighted_ridge(z.cpu(), y, self.similarity(z.cpu()), self.alpha)
            for z, y in zip(coalitions, outputs)
        ]
        coefs = [f[0] for f in fits]
        details = LimeDetails(
            segments=segments,
            feature_counts=torch.tensor(counts, device=x.device),
            feature_weights=_padded(coefs, x.dtype, x.device),
            intercept=torch.stack([f[1] for f in fits]).to(x.device, x.dtype),
            fit_r2=torch.stack([f[2] for f in fits]).to(x.device, x.dtype),
        )
        values = _feature_map(x, segments, coefs)
        indices = target.indices_or_unknown(len(x), x.device)
        return Attribution(values, scores, indices, predicted, details)


@register
@dataclass(frozen=True, kw_only=True)
class KernelShap(SuperpixelMethod):
    """KernelSHAP on superpixels (Lundberg & Lee, 2017).

    Options: those of :class:`SuperpixelMethod`. ``samples`` (default 1000) counts the
    model evaluations per row, ``f(x)`` and ``f(baseline)`` included. When
    ``2^F ≤ samples`` every coalition is evaluated and the values are the exact Shapley
    values of the game ``v(z) = f(x with the features off in z replaced by the
    baseline)``; otherwise antithetic pairs are sampled (see
    :func:`shapley_coalitions`). Either way ``Σ φ = f(x) − f(baseline)`` holds exactly
    (constrained least squares). Attributions are the values painted on their superpixels.
    """

    # f(x), f(baseline) and at least one antithetic pair
    samples: int = option(1000, check=integer(at_least=4))

    name: ClassVar[str] = "kernel_shap"
    result_type: ClassVar[type[Explanation]] = KernelShapExplanation

    def attribute_rows(self, ctx: PassContext, x: Tensor, target: Target) -> Attribution:
        target, scores, predicted = ctx.resolve(x, target)
        segments, baselines = self.feature_layer(x)
        counts = [int(s.max()) + 1 for s in segments]
        designs = [
            shapley_coalitions(f, self.samples, ctx.generator(i)) for i, f in enumerate(counts)
        ]
        coalitions = [d[0] for d in designs]
        outputs = evaluate_coalitions(ctx, x, target, baselines, segments, coalitions)
        values, base, error = [], [], []
        for (z, w, _), y in zip(designs, outputs):
            v1, v0 = y[0], y[1]
            phi = constrained_shapley_fit(z[2:].cpu(), y[2:], w[2:], v0, v1)
            values.append(phi)
            base.append(v0)
            error.append(phi.sum() - (v1 - v0))
        details = KernelShapDetails(
            segments=segments,
            feature_counts=torch.tensor(counts, device=x.device),
            feature_values=_padded(values, x.dtype, x.device),
            base_value=torch.stack(base).to(x.device, x.dtype),
            efficiency_error=torch.stack(error).to(x.device, x.dtype),
            exact=torch.tensor([d[2] for d in designs], device=x.device),
        )
        indices = target.indices_or_unknown(len(x), x.device)
        return Attribution(_feature_map(x, segments, values), scores, indices, predicted, details)

"""Faithfulness, robustness and complexity of an explanation, measured on the model.

Every function takes the model and an :class:`~seethrough.attribution.Explanation` (its
inputs, targets and maps; layer-resolution CAMs are upsampled first) and returns a
:class:`MetricResult`: one score per image plus the metric's direction, range and
reference, and the curve behind the score where there is one. Model evaluations run in
chunks under the shared memory budget, inside the model guard (the model is untouched).

Pixels are ranked by the channel sum of the map (``absolute=True``: of its magnitude),
most relevant first. Equal values (a constant map, the zeros of a sparse map, the flat
patches of an upsampled CAM) are put in a random order drawn from ``seed``
(``ties="random"``, the default). Ranking them by position (``ties="raster"``, what this
module did before; the RISE code's ``np.argsort`` leaves the order to the sort algorithm)
removes the top-left pixels first and biases the curve by where the object sits. One
seed gives one tie order; to average over tie orders, average the scores of a few seeds.
Maps without ties rank the same either way.

=====================  ===================================================  ==========
metric                 definition                                           better
=====================  ===================================================  ==========
``deletion``           AUC of the target's probability while the most       lower
                       relevant pixels are replaced by a baseline
                       (Petsiuk et al., 2018)
``insertion``          AUC while they are inserted into a blurred copy      higher
``aopc``               mean drop of the target score over the first ``L``   higher
                       most relevant patches removed (Samek et al., 2017)
``road``               ROAD (Rong et al., 2022): MoRF/LeRF curves with      MoRF lower
                       noisy linear imputation                              LeRF higher
``infidelity``         E[(β·Iᵀφ − (f(x) − f(x − I)))²], I ~ N(0, σ²),       lower
                       β the optimal rescaling (Yeh et al., 2019)
``max_sensitivity``    max over ‖δ‖∞ ≤ r of ‖φ(x + δ) − φ(x)‖₂              lower
                       (Yeh et al., 2019), sampled
``sparseness``         Gini index of |φ| (Chalasani et al., 2020)            higher
``input_invariance``   φ on a twin model fed x + c vs φ on x                 invariant
                       (Kindermans et al., 2017)
=====================  ===================================================  ==========
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..attribution import explain
from ..attribution.explanation import Explanation
from ..core.baselines import BaselineLike, check_baseline, make_baseline
from ..core.budget import Budget
from ..core.guard import guarded
from ..core.passes import forward_logits
from ..errors import InvalidInputError, InvalidOptionError
from ..words import Description
from .verdict import ControlComparison, compare_with_control

__all__ = [
    "SCORES",
    "TIES",
    "InfidelityResult",
    "InvarianceResult",
    "MetricResult",
    "RoadResult",
    "aopc",
    "deletion",
    "input_invariance",
    "insertion",
    "infidelity",
    "max_sensitivity",
    "noisy_linear_imputation",
    "pixel_ranks",
    "rank_descending",
    "road",
    "sparseness",
]

SCORES = ("probability", "logit")
TIES = ("random", "raster")
BASELINES = ("zeros", "blur", "mean")  # deletion and insertion
REPLACEMENTS = ("uniform", *BASELINES)  # AOPC


@dataclass(frozen=True, eq=False)
class MetricResult:
    """One metric for one explanation.

    ``scores`` ``(N,)`` per image, better as ``higher_is_better`` says, within
    ``value_range``; ``curve`` ``(N, K)`` at ``x_values`` ``(K,)`` for curve metrics
    (ROAD: ``(N, 2, K)``, MoRF then LeRF). Metrics with more to report return a subclass
    with named fields (:class:`RoadResult`, :class:`InfidelityResult`,
    :class:`InvarianceResult`, the localisation results).
    """

    metric: str
    method: str
    scores: Tensor
    higher_is_better: bool
    value_range: tuple[float, float]
    reference: str
    settings: Mapping[str, Any]
    curve: Tensor | None = None
    x_values: Tensor | None = None

    def mean(self) -> float:
        """The mean score over the images that have one (NaN-safe)."""
        return float(self.scores.nanmean())

    def compare_with(
        self, control: MetricResult, *, level: float = 0.95, seed: int = 0
    ) -> ControlComparison:
        """This metric against the same metric of a control (e.g. the ``random_noise``
        method) on the same images: :func:`seethrough.trust.verdict.compare_with_control`."""
        return compare_with_control(self, control, level=level, seed=seed)

    def describe(self, lang: str = "en") -> Description:
        """The mean score in words, hedged: without a control it does not say whether the
        map is faithful (:func:`seethrough.trust.describe.describe_metric`; describe
        :meth:`compare_with`'s result for the comparison)."""
        from .describe import describe_metric

        return describe_metric(self, lang)


@dataclass(frozen=True, eq=False, kw_only=True)
class RoadResult(MetricResult):
    """:func:`road`'s result: ``morf`` and ``lerf`` ``(N,)`` are each image's mean score
    with the most / least relevant pixels imputed (``scores`` = ``lerf − morf``);
    ``correct`` ``(N, 2, P)`` bool whether each imputed image is still classified as its
    target (argmax), MoRF then LeRF, per percentage."""

    morf: Tensor
    lerf: Tensor
    correct: Tensor


@dataclass(frozen=True, eq=False, kw_only=True)
class InfidelityResult(MetricResult):
    """:func:`infidelity`'s result: ``beta`` ``(N,)`` the rescaling of each image's map
    (the optimal one, or 1 with ``rescale=False``)."""

    beta: Tensor


@dataclass(frozen=True, eq=False, kw_only=True)
class InvarianceResult(MetricResult):
    """:func:`input_invariance`'s result: ``invariant`` ``(N,)`` bool, whether each
    image's score is at most the ``tolerance``."""

    invariant: Tensor


# ----------------------------------------------------------------------------- helpers


def _maps(ex: Explanation) -> Tensor:
    return ex.to_input_size().attributions


def _check_score(score: str) -> None:
    if score not in SCORES:
        raise InvalidOptionError(f"unknown score {score!r} (valid: {', '.join(SCORES)})")


def _check_explanation(ex: Explanation) -> None:
    if not isinstance(ex, Explanation):
        raise InvalidInputError(
            f"expected an Explanation (from seethrough.explain), got {type(ex).__name__}"
        )
    if bool((ex.targets < 0).any()):
        raise InvalidInputError(
            "this explanation's target was a callable; metrics need class indices — "
            "explain with target= classes"
        )


def _check_ties(ties: str) -> None:
    if ties not in TIES:
        raise InvalidOptionError(f"unknown ties {ties!r} (valid: {', '.join(TIES)})")


def rank_descending(values: Tensor, *, ties: str = "random", seed: int = 0) -> Tensor:
    """``(N, K)`` rank of each of ``values`` ``(N, K)`` per row, 0 = largest.

    Equal values are ordered by a random permutation of the ``K`` positions drawn from
    ``seed`` on the CPU (``ties="random"``; the same permutation for every row, so a
    batch ranks like its rows one by one, on any device), or by position
    (``ties="raster"``). Rows without ties get the same ranks either way.
    """
    _check_ties(ties)
    k = values.shape[1]
    if ties == "random":
        g = torch.Generator().manual_seed(seed)
        perm = torch.randperm(k, generator=g).to(values.device).expand_as(values)
        order = perm.gather(1, torch.argsort(-values.gather(1, perm), dim=1, stable=True))
    else:
        order = torch.argsort(-values, dim=1, stable=True)
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(k, device=order.device).expand_as(order))
    return ranks


def pixel_ranks(
    maps: Tensor, absolute: bool = False, *, ties: str = "random", seed: int = 0
) -> Tensor:
    """``(N, H, W)`` rank of each pixel, 0 = most relevant (channel sum of the map;
    ``absolute``: of its magnitude). Ties: see :func:`rank_descending`."""
    relevance = (maps.abs() if absolute else maps).sum(dim=1).flatten(1)
    ranks = rank_descending(relevance, ties=ties, seed=seed)
    return ranks.reshape(maps.shape[0], *maps.shape[2:])


def _softmax(logits: Tensor) -> Tensor:
    """Softmax in at least float32 (half-precision logits would lose the small ones)."""
    return logits.to(torch.promote_types(logits.dtype, torch.float32)).softmax(dim=1)


def _logits(
    model: nn.Module,
    rows: Callable[[int, int], Tensor],
    total: int,
    batch_size: int | None,
    device: torch.device,
) -> Tensor:
    """The model's logits for each of ``total`` rows, in chunks, under the guard."""
    with guarded(model, [device]):
        return forward_logits(model, rows, total, Budget(batch_size, device))


def _pick(logits: Tensor, classes: Tensor, score: str) -> Tensor:
    """The ``score`` (``"probability"`` or ``"logit"``) of ``classes[r]`` in each row."""
    if score == "probability":
        logits = _softmax(logits)
    return logits.gather(1, classes[:, None].to(logits.device))[:, 0]


def _target_scores(
    model: nn.Module,
    rows: Callable[[int, int], Tensor],
    total: int,
    classes: Tensor,
    score: str,
    batch_size: int | None,
    device: torch.device,
) -> Tensor:
    """The score of ``classes[r]`` for each of ``total`` rows, under the guard."""
    return _pick(_logits(model, rows, total, batch_size, device), classes, score)


@dataclass(frozen=True)
class _Removal:
    """The options deletion, insertion, AOPC and ROAD share: how pixels are ranked
    (``absolute``, ``ties``, ``seed``) and how the target is read (``score``, in chunks
    of ``batch_size`` rows)."""

    absolute: bool
    score: str
    ties: str
    seed: int
    batch_size: int | None

    def pixel_ranks(self, ex: Explanation) -> Tensor:
        """``(N, H, W)`` rank of each pixel of the explanation's maps (:func:`pixel_ranks`)."""
        return pixel_ranks(_maps(ex), self.absolute, ties=self.ties, seed=self.seed)

    def settings(self, **own: Any) -> dict[str, Any]:
        """A result's settings: the metric's ``own``, then the shared ones."""
        shared = {"absolute": self.absolute, "score": self.score, "ties": self.ties}
        return {**own, **shared, "seed": self.seed}


# ------------------------------------------------------------------ deletion / insertion


def _auc_curve(
    model: nn.Module,
    ex: Explanation,
    insert: bool,
    steps: int,
    baseline: BaselineLike,
    shared: _Removal,
) -> tuple[Tensor, Tensor]:
    """``(N, steps + 1)`` target scores as the most relevant pixels are removed
    (inserted), at the fractions ``(steps + 1,)`` of pixels changed."""
    _check_explanation(ex)
    _check_score(shared.score)
    if not isinstance(steps, int) or steps < 1:
        raise InvalidOptionError(f"steps must be a positive integer, got {steps!r}")
    x = ex.inputs
    base = make_baseline(baseline, x, kinds=BASELINES)
    ranks = shared.pixel_ranks(ex)
    pixels = ranks[0].numel()
    fractions = torch.linspace(0, 1, steps + 1, dtype=torch.float64)
    counts = (fractions * pixels).round().long().to(x.device)
    k = steps + 1

    def rows(start: int, stop: int) -> Tensor:
        r = torch.arange(start, stop, device=x.device)
        image, step = r // k, r % k
        chosen = (ranks[image] < counts[step][:, None, None])[:, None]
        if insert:
            return torch.where(chosen, x[image], base[image])
        return torch.where(chosen, base[image], x[image])

    classes = ex.targets.repeat_interleave(k)
    curve = _target_scores(
        model, rows, len(x) * k, classes, shared.score, shared.batch_size, x.device
    )
    return curve.reshape(len(x), k).double().cpu(), fractions


def _auc_metric(
    name: str,
    model: nn.Module,
    explanation: Explanation,
    steps: int,
    baseline: BaselineLike,
    shared: _Removal,
) -> MetricResult:
    """Deletion or insertion (``name``): the AUC of :func:`_auc_curve`."""
    insert = name == "insertion"
    curve, fractions = _auc_curve(model, explanation, insert, steps, baseline, shared)
    return MetricResult(
        name,
        explanation.method,
        torch.trapezoid(curve, fractions, dim=1),
        insert,
        (0.0, 1.0) if shared.score == "probability" else (-np.inf, np.inf),
        "Petsiuk et al. (2018), RISE, BMVC",
        shared.settings(steps=steps, baseline=str(baseline)),
        curve,
        fractions,
    )


def deletion(
    model: nn.Module,
    explanation: Explanation,
    *,
    steps: int = 50,
    baseline: BaselineLike = "zeros",
    absolute: bool = False,
    score: str = "probability",
    ties: str = "random",
    seed: int = 0,
    batch_size: int | None = None,
) -> MetricResult:
    """Deletion AUC: replace the most relevant pixels by ``baseline`` (zeros in the
    model's input space by default), ``steps`` increments from none to all, and take the
    area under the target's ``score`` (trapezoid over the fraction removed).

    Petsiuk et al. (2018), RISE, BMVC. Deviation: pixels of equal relevance are removed
    in a random order drawn from ``seed`` (``ties="random"``; the paper does not say,
    its code leaves the order to ``np.argsort``), or in raster order (``ties="raster"``);
    see the module docstring.
    """
    shared = _Removal(absolute, score, ties, seed, batch_size)
    return _auc_metric("deletion", model, explanation, steps, baseline, shared)


def insertion(
    model: nn.Module,
    explanation: Explanation,
    *,
    steps: int = 50,
    baseline: BaselineLike = "blur",
    absolute: bool = False,
    score: str = "probability",
    ties: str = "random",
    seed: int = 0,
    batch_size: int | None = None,
) -> MetricResult:
    """Insertion AUC: start from ``baseline`` (a blurred copy by default) and insert the
    most relevant pixels of the image first. Ties and ``seed`` as in :func:`deletion`."""
    shared = _Removal(absolute, score, ties, seed, batch_size)
    return _auc_metric("insertion", model, explanation, steps, baseline, shared)


# ------------------------------------------------------------------------------ AOPC


def aopc(
    model: nn.Module,
    explanation: Explanation,
    *,
    patch: int = 8,
    regions: int = 50,
    replacement: BaselineLike = "uniform",
    absolute: bool = False,
    score: str = "logit",
    ties: str = "random",
    seed: int = 0,
    batch_size: int | None = None,
) -> MetricResult:
    """AOPC (pixel flipping by regions): ``1/(L+1) Σ_{k=0..L} f(x) − f(x_k)`` where
    ``x_k`` has the ``k`` most relevant ``patch``×``patch`` regions (non-overlapping
    grid, ranked by summed relevance) replaced — by uniform noise over the image's value
    range (Samek et al.'s choice; ``replacement="uniform"``) or by a baseline
    (``"zeros"``, ``"blur"``, ``"mean"``, a number or a tensor; see
    :func:`~seethrough.core.baselines.make_baseline`). ``seed`` draws the noise and, with
    ``ties="random"``, the order of regions of equal relevance (``"raster"``: grid order,
    as before); see the module docstring."""
    _check_explanation(explanation)
    _check_score(score)
    _check_ties(ties)
    check_baseline(replacement, REPLACEMENTS, name="replacement")
    shared = _Removal(absolute, score, ties, seed, batch_size)
    x = explanation.inputs
    n, _c, h, w = x.shape
    if h % patch or w % patch:
        raise InvalidOptionError(f"patch {patch} must divide the image size {h}×{w}")
    pixel_rank, regions = _region_ranks(explanation, patch, regions, shared)
    noise = torch.Generator(device=x.device).manual_seed(seed)
    fill = make_baseline(replacement, x, kinds=REPLACEMENTS, generator=noise)
    k = regions + 1

    def rows(start: int, stop: int) -> Tensor:
        r = torch.arange(start, stop, device=x.device)
        image, step = r // k, r % k
        removed = pixel_rank[image] < step[:, None, None, None]
        return torch.where(removed, fill[image], x[image])

    classes = explanation.targets.repeat_interleave(k)
    curve = _target_scores(model, rows, n * k, classes, score, batch_size, x.device)
    curve = curve.reshape(n, k).double().cpu()
    drops = curve[:, :1] - curve
    return MetricResult(
        "aopc",
        explanation.method,
        drops.mean(dim=1),
        True,
        (-np.inf, np.inf),
        "Samek et al. (2017), IEEE TNNLS",
        shared.settings(patch=patch, regions=regions, replacement=str(replacement)),
        curve,
        torch.arange(k, dtype=torch.float64),
    )


def _region_ranks(
    explanation: Explanation, patch: int, regions: int, shared: _Removal
) -> tuple[Tensor, int]:
    """``(N, 1, H, W)``: each pixel's ``patch``×``patch`` region's rank by summed
    relevance (0 = most relevant), and the number of regions removed (at most all)."""
    maps = _maps(explanation)
    n, _c, h, w = maps.shape
    relevance = (maps.abs() if shared.absolute else maps).sum(dim=1)
    cells = F.avg_pool2d(relevance[:, None], patch)[:, 0].flatten(1)  # (N, cells)
    ranks = rank_descending(cells, ties=shared.ties, seed=shared.seed)
    cell_rank = ranks.reshape(n, 1, h // patch, w // patch)
    pixel_rank = F.interpolate(cell_rank.float(), scale_factor=patch, mode="nearest").long()
    return pixel_rank, min(regions, cells.shape[1])


# ------------------------------------------------------------------------------- ROAD

_NEIGHBOURS = [
    ((0, 1), 1 / 6),
    ((0, -1), 1 / 6),
    ((1, 0), 1 / 6),
    ((-1, 0), 1 / 6),
    ((1, 1), 1 / 12),
    ((1, -1), 1 / 12),
    ((-1, 1), 1 / 12),
    ((-1, -1), 1 / 12),
]


def noisy_linear_imputation(
    image: Tensor, removed: Tensor, noise: float = 0.01, generator: torch.Generator | None = None
) -> Tensor:
    """Rong et al.'s (2022) imputation of ``image`` ``(C, H, W)`` where ``removed``
    ``(H, W)`` is True: each removed pixel equals the weighted mean of its 8 neighbours
    (weights 1/6 direct, 1/12 diagonal; outside the image: left out), solved jointly as
    a sparse linear system per channel, plus ``noise`` · N(0, 1)."""
    from scipy.sparse import csc_matrix
    from scipy.sparse.linalg import splu

    c, h, w = image.shape
    mask = removed.cpu().numpy()
    unknown = np.flatnonzero(mask.ravel())
    if unknown.size == 0:
        return image.clone()
    index = -np.ones(h * w, dtype=np.int64)
    index[unknown] = np.arange(unknown.size)
    values = image.detach().cpu().double().numpy().reshape(c, h * w)
    rows, cols, data = [], [], []
    rhs = np.zeros((unknown.size, c))
    ys, xs = np.divmod(unknown, w)
    diag = np.zeros(unknown.size)
    for (dy, dx), weight in _NEIGHBOURS:
        ny, nx = ys + dy, xs + dx
        inside = (ny >= 0) & (ny < h) & (nx >= 0) & (nx < w)
        diag[inside] += weight
        flat = ny[inside] * w + nx[inside]
        me = np.flatnonzero(inside)
        known = index[flat] < 0
        rhs[me[known]] += weight * values[:, flat[known]].T
        rows.extend(me[~known])
        cols.extend(index[flat[~known]])
        data.extend([-weight] * int((~known).sum()))
    rows.extend(range(unknown.size))
    cols.extend(range(unknown.size))
    data.extend(diag)
    system = csc_matrix((data, (rows, cols)), shape=(unknown.size, unknown.size))
    solved = splu(system).solve(rhs)  # (unknown, C)
    out = values.copy()
    out[:, unknown] = solved.T
    result = torch.from_numpy(out.reshape(c, h, w)).to(image.dtype).to(image.device)
    if noise:
        g = generator if generator is not None else torch.Generator(device=image.device)
        jitter = torch.randn((c, unknown.size), generator=g, device=image.device, dtype=image.dtype)
        flat_result = result.reshape(c, -1)
        flat_result[:, torch.from_numpy(unknown).to(image.device)] += noise * jitter
    return result


def road(
    model: nn.Module,
    explanation: Explanation,
    *,
    percentages: tuple[float, ...] = (10, 20, 30, 40, 50, 60, 70, 80, 90),
    noise: float = 0.01,
    absolute: bool = False,
    score: str = "probability",
    ties: str = "random",
    seed: int = 0,
    batch_size: int | None = None,
) -> RoadResult:
    """ROAD: remove the most (MoRF) and the least (LeRF) relevant ``p`` % of pixels,
    impute them with :func:`noisy_linear_imputation`, and read the target's ``score``.
    ``seed`` draws the imputation noise and, with ``ties="random"``, the order of pixels
    of equal relevance (``"raster"``: the earlier order); see the module docstring.

    ``curve`` is ``(N, 2, P)`` (MoRF, LeRF); ``scores`` is the mean of LeRF − MoRF over
    the percentages (higher = more faithful: removing what the map calls important hurts
    more than removing what it calls unimportant); the :class:`RoadResult` also holds the
    MoRF and LeRF means and each row's correctness (argmax == target).
    """
    _check_explanation(explanation)
    _check_score(score)
    if not percentages or not all(0 < p < 100 for p in percentages):
        raise InvalidOptionError(f"percentages must lie in (0, 100), got {percentages!r}")
    shared = _Removal(absolute, score, ties, seed, batch_size)
    x = explanation.inputs
    n = len(x)
    batch = _road_inputs(x, shared.pixel_ranks(explanation), percentages, noise, seed)
    classes = explanation.targets.repeat_interleave(2 * len(percentages))
    logits = _logits(model, lambda a, b: batch[a:b], len(batch), batch_size, x.device)
    correct = (logits.argmax(dim=1) == classes.to(logits.device)).reshape(n, 2, -1).cpu()
    curve = _pick(logits, classes, score).reshape(n, 2, -1).double().cpu()
    morf, lerf = curve[:, 0].mean(dim=1), curve[:, 1].mean(dim=1)
    return RoadResult(
        "road",
        explanation.method,
        lerf - morf,
        True,
        (-1.0, 1.0) if score == "probability" else (-np.inf, np.inf),
        "Rong et al. (2022), ICML",
        shared.settings(percentages=tuple(percentages), noise=noise),
        curve,
        torch.tensor(percentages, dtype=torch.float64),
        morf=morf,
        lerf=lerf,
        correct=correct,
    )


def _road_inputs(
    x: Tensor, ranks: Tensor, percentages: tuple[float, ...], noise: float, seed: int
) -> Tensor:
    """ROAD's imputed images, image after image: MoRF then LeRF, at every percentage
    (the imputation noise drawn in that order from ``seed``)."""
    pixels = ranks[0].numel()
    g = torch.Generator(device=x.device).manual_seed(seed)
    imputed = []
    for i in range(len(x)):
        for most in (True, False):
            for p in percentages:
                count = round(pixels * p / 100)
                removed = ranks[i] < count if most else ranks[i] >= pixels - count
                imputed.append(noisy_linear_imputation(x[i], removed, noise, g))
    return torch.stack(imputed)


# ------------------------------------------------------------------------- infidelity


def infidelity(
    model: nn.Module,
    explanation: Explanation,
    *,
    samples: int = 64,
    noise: float = 0.2,
    rescale: bool = True,
    score: str = "logit",
    seed: int = 0,
    batch_size: int | None = None,
) -> InfidelityResult:
    """Infidelity with Gaussian perturbations ``I ~ N(0, noise²)`` per input element:
    ``mean_j (β·s_j − Δf_j)²`` with ``s_j = Σ I_j ⊙ φ`` and ``Δf_j = f(x) − f(x − I_j)``;
    ``β = Σ s·Δf / Σ s²`` (Yeh et al.'s optimal rescaling, so a map that is right up to
    scale is not penalised) or 1 with ``rescale=False``. Needs input-resolution maps of
    the input's shape (or CAMs, upsampled)."""
    _check_explanation(explanation)
    _check_score(score)
    x = explanation.inputs
    phi = _maps(explanation)
    if phi.shape[1] != x.shape[1]:
        phi = phi.expand_as(x)  # one-channel maps weigh every channel alike
    n = len(x)
    g = torch.Generator(device=x.device).manual_seed(seed)
    perturbations = noise * torch.randn(
        (n, samples, *x.shape[1:]), generator=g, device=x.device, dtype=x.dtype
    )

    def rows(start: int, stop: int) -> Tensor:
        r = torch.arange(start, stop, device=x.device)
        image, j = r // (samples + 1), r % (samples + 1)
        delta = torch.where(
            (j == 0)[:, None, None, None],
            torch.zeros_like(x[image]),
            perturbations[image, (j - 1).clamp_min(0)],
        )
        return x[image] - delta

    classes = explanation.targets.repeat_interleave(samples + 1)
    f = _target_scores(model, rows, n * (samples + 1), classes, score, batch_size, x.device)
    f = f.reshape(n, samples + 1).double()
    delta_f = (f[:, :1] - f[:, 1:]).cpu()
    s = (perturbations * phi[:, None]).flatten(2).sum(dim=2).double().cpu()
    if rescale:
        beta = (s * delta_f).sum(dim=1) / (s * s).sum(dim=1).clamp_min(1e-30)
    else:
        beta = torch.ones(n, dtype=torch.float64)
    values = ((beta[:, None] * s - delta_f) ** 2).mean(dim=1)
    return InfidelityResult(
        "infidelity",
        explanation.method,
        values,
        False,
        (0.0, np.inf),
        "Yeh et al. (2019), On the (In)fidelity and Sensitivity of Explanations, NeurIPS",
        {"samples": samples, "noise": noise, "rescale": rescale, "score": score, "seed": seed},
        beta=beta,
    )


# -------------------------------------------------------------------- max-sensitivity


def _reexplain(
    model: nn.Module,
    explanation: Explanation,
    x: Tensor,
    targets: Tensor,
    batch_size: int | None,
    prefix: str = "",
) -> Explanation:
    settings = dict(explanation.settings)
    layer = settings.get("layer")
    if prefix and isinstance(layer, str):
        settings["layer"] = prefix + layer
    elif prefix and isinstance(layer, (list, tuple)):
        settings["layer"] = [prefix + name for name in layer]
    for key, value in settings.items():
        if isinstance(value, str) and value.startswith("tensor("):
            raise InvalidOptionError(
                f"option {key!r} of {explanation.method} was a tensor; re-explaining needs it — "
                "pass the explanation of a call without tensor options"
            )
    return explain(
        model,
        x,
        explanation.method,
        targets,
        seed=explanation.seed,
        batch_size=batch_size,
        **settings,
    )


def max_sensitivity(
    model: nn.Module,
    explanation: Explanation,
    *,
    radius: float = 0.1,
    samples: int = 10,
    relative: bool = False,
    seed: int = 0,
    batch_size: int | None = None,
) -> MetricResult:
    """Max-sensitivity: ``max_j ‖φ(x + δ_j) − φ(x)‖₂`` over ``samples`` draws of
    ``δ ~ U(−radius, radius)`` per input element (Yeh et al.'s definition; Quantus
    divides by ‖φ(x)‖ — ``relative=True``). The method is re-run with the explanation's
    own settings and seed, for the same classes."""
    _check_explanation(explanation)
    x = explanation.inputs
    n = len(x)
    g = torch.Generator(device=x.device).manual_seed(seed)
    deltas = torch.rand((samples, *x.shape), generator=g, device=x.device, dtype=x.dtype) * 2 - 1
    noisy = (x[None] + radius * deltas).reshape(samples * n, *x.shape[1:])
    again = _reexplain(model, explanation, noisy, explanation.targets.repeat(samples), batch_size)
    base = _maps(explanation).flatten(1)
    moved = _maps(again).reshape(samples, n, -1)
    norms = (moved - base[None]).norm(dim=2).amax(dim=0).double().cpu()
    if relative:
        norms = norms / base.norm(dim=1).double().cpu()
    return MetricResult(
        "max_sensitivity",
        explanation.method,
        norms,
        False,
        (0.0, np.inf),
        "Yeh et al. (2019), NeurIPS",
        {"radius": radius, "samples": samples, "relative": relative, "seed": seed},
    )


# ------------------------------------------------------------------------- sparseness


def sparseness(explanation: Explanation) -> MetricResult:
    """Gini index of ``|φ|`` over all its elements, per image: 0 for a uniform map,
    ``(n − 1)/n`` for a single non-zero element; NaN for an all-zero map."""
    a = _maps(explanation).abs().flatten(1).double().sort(dim=1).values.cpu()
    n = a.shape[1]
    i = torch.arange(1, n + 1, dtype=torch.float64)
    total = a.sum(dim=1)
    gini = ((2 * i - n - 1) * a).sum(dim=1) / (n * total)
    gini = torch.where(total > 0, gini, torch.full_like(gini, float("nan")))
    return MetricResult(
        "sparseness",
        explanation.method,
        gini,
        True,
        (0.0, 1.0),
        "Chalasani et al. (2020), ICML",
        {},
    )


# ------------------------------------------------------------------ input invariance


class ShiftedTwin(nn.Module):
    """``twin(x + shift) = model(x)``: the model behind a layer that removes a constant
    input shift — the same function on shifted data (Kindermans et al.'s twin network;
    they fold the shift into the first layer's bias, which is the same function)."""

    def __init__(self, model: nn.Module, shift: Tensor) -> None:
        super().__init__()
        self.model = model
        self.shift: Tensor
        self.register_buffer("shift", shift)

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x - self.shift)


def input_invariance(
    model: nn.Module,
    explanation: Explanation,
    *,
    shift: float | Tensor = 0.5,
    tolerance: float = 1e-5,
    batch_size: int | None = None,
) -> InvarianceResult:
    """Is the method input-invariant? Explain ``x + shift`` on :class:`ShiftedTwin` and
    compare with the original map: ``scores`` is ``max|φ_twin − φ| / max|φ|`` per image
    (0 = invariant; ``invariant``: ≤ ``tolerance``). Gradients pass; gradient ×
    input and IG with a zero baseline do not (the paper's finding)."""
    _check_explanation(explanation)
    x = explanation.inputs
    c = torch.as_tensor(shift, dtype=x.dtype, device=x.device)
    if c.dim() == 1:
        c = c.reshape(1, -1, 1, 1)
    twin = ShiftedTwin(model, c).eval()
    again = _reexplain(twin, explanation, x + c, explanation.targets, batch_size, "model.")
    base = _maps(explanation).flatten(1)
    diff = (_maps(again).flatten(1) - base).abs().amax(dim=1) / base.abs().amax(dim=1).clamp_min(
        1e-30
    )
    diff = diff.double().cpu()
    return InvarianceResult(
        "input_invariance",
        explanation.method,
        diff,
        False,
        (0.0, np.inf),
        "Kindermans et al. (2017), The (Un)reliability of saliency methods",
        {
            "shift": float(c.flatten()[0]) if c.numel() == 1 else c.flatten().tolist(),
            "tolerance": tolerance,
        },
        invariant=diff <= tolerance,
    )

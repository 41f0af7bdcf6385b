"""Localisation: does the map put its relevance on the object?

Every function takes a map — an :class:`~seethrough.attribution.Explanation` (CAMs are
upsampled to the input first) or a tensor ``(N, C, H, W)`` / ``(N, H, W)`` — and the
object's region per image, and returns a :class:`LocalisationResult` (a
:class:`~seethrough.trust.faithfulness.MetricResult`) with one score per image. No model
is run.

``regions`` is either

* a bool mask ``(N, H, W)`` (True = object), at the map's input resolution, or
* boxes ``(N, 4)``: ``x0, y0, x1, y1`` in pixels of that image, ``x0, y0`` inclusive and
  ``x1, y1`` exclusive (Python slicing: the box ``[2, 0, 5, 3]`` holds columns 2–4 and
  rows 0–2). Fractional boxes hold the pixels whose centre ``(x + ½, y + ½)`` lies in
  ``[x0, x1) × [y0, y1)``, which is the same rule for whole numbers. Boxes reaching
  past the image are clipped to it. For several boxes per image (every instance of
  the class, as the papers count), pass the union of their :func:`boxes_to_masks`.

An empty region or a map with NaN or infinite values raises
:class:`~seethrough.errors.InvalidInputError` naming the rows. Every result's
``area_fraction`` is the share of the image the region covers: the chance level of every
metric here (a uniformly random point, or a uniform map, scores it; the pointing game at
tolerance 0).

===========================  ==============================================  ======
metric                       definition                                      better
===========================  ==============================================  ======
``pointing_game``            1 if the map's maximum lies in the region       higher
                             (within ``tolerance`` px), else 0
                             (Zhang et al., 2018)
``energy_pointing_game``     Σ_in max(s, 0) / Σ max(s, 0), s the channel     higher
                             sum (Wang et al., 2020, Score-CAM)
``relevance_mass_accuracy``  Σ_in r / Σ r, r ≥ 0 the pooled map              higher
                             (Arras et al., 2022, CLEVR-XAI)
``relevance_rank_accuracy``  share of the K = |region| most relevant pixels  higher
                             that lie in the region (Arras et al., 2022)
===========================  ==============================================  ======

Ties: where several pixels share the maximum (pointing game) or the K-th largest value
(rank accuracy), the score is its expectation over a uniformly random order of the tied
pixels, computed exactly — so a constant map scores the region's area fraction, not 1
(Quantus's pointing game counts a hit when *any* tied maximum is inside: ``ties="any"``).
No seed is needed here; deletion and insertion, where the model stands between the order
and the score, draw one seeded tie order instead (:mod:`seethrough.trust.faithfulness`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..attribution.explanation import Explanation
from ..errors import InvalidInputError, InvalidOptionError
from .faithfulness import MetricResult

__all__ = [
    "POINTING_TIES",
    "POOLINGS",
    "EnergyResult",
    "LocalisationResult",
    "PointingResult",
    "RegionsLike",
    "boxes_to_masks",
    "energy_pointing_game",
    "pointing_game",
    "relevance_mass_accuracy",
    "relevance_rank_accuracy",
]

RegionsLike = Tensor | np.ndarray | Sequence[Sequence[float]]
MapsLike = Explanation | Tensor

POINTING_TIES = ("average", "any")
# Arras et al.'s channel poolings (their evaluation code): each maps C values to r >= 0.
POOLINGS = ("sum,pos", "sum,abs", "max-norm", "l1-norm", "l2-norm", "l2-norm,sq")

_ZHANG = "Zhang et al. (2018), Top-down neural attention by excitation backprop, IJCV"
_WANG = "Wang et al. (2020), Score-CAM, CVPR Workshops (energy-based pointing game)"
_ARRAS = "Arras et al. (2022), CLEVR-XAI, Information Fusion 81"


# ----------------------------------------------------------------------------- inputs


def _maps(source: MapsLike) -> tuple[Tensor, str]:
    """``(N, C, H, W)`` float64 maps at input resolution and the method's name."""
    if isinstance(source, Explanation):
        maps, method = source.to_input_size().attributions, source.method
    elif isinstance(source, Tensor):
        maps, method = source, "maps"
        if maps.dim() == 3:
            maps = maps[:, None]
    else:
        raise InvalidInputError(
            f"expected an Explanation or a tensor of maps, got {type(source).__name__}"
        )
    if maps.dim() != 4 or maps.shape[0] == 0:
        raise InvalidInputError(
            f"maps must be (N, C, H, W) or (N, H, W) with N ≥ 1, got {tuple(maps.shape)}"
        )
    maps = maps.detach().double()
    bad = (~torch.isfinite(maps)).flatten(1).any(dim=1)
    if bool(bad.any()):
        rows = bad.nonzero()[:, 0].tolist()
        raise InvalidInputError(
            f"the maps of rows {rows} have NaN or infinite values; "
            "localisation needs finite maps — fix or drop those rows"
        )
    return maps, method


def boxes_to_masks(boxes: Tensor, height: int, width: int) -> Tensor:
    """``(N, H, W)`` bool masks of ``boxes`` ``(N, 4)`` (``x0, y0, x1, y1``; start
    inclusive, end exclusive; a pixel is inside when its centre is)."""
    boxes = boxes.double()
    if not bool(torch.isfinite(boxes).all()):
        raise InvalidInputError("boxes have NaN or infinite coordinates")
    x0, y0, x1, y1 = boxes.unbind(dim=1)
    if bool(((x1 <= x0) | (y1 <= y0)).any()):
        rows = ((x1 <= x0) | (y1 <= y0)).nonzero()[:, 0].tolist()
        raise InvalidInputError(
            f"boxes of rows {rows} have x1 ≤ x0 or y1 ≤ y0; boxes are [x0, y0, x1, y1] "
            "with the end exclusive"
        )
    cx = torch.arange(width, dtype=torch.float64, device=boxes.device) + 0.5
    cy = torch.arange(height, dtype=torch.float64, device=boxes.device) + 0.5
    inside_x = (cx >= x0[:, None]) & (cx < x1[:, None])  # (N, W)
    inside_y = (cy >= y0[:, None]) & (cy < y1[:, None])  # (N, H)
    return inside_y[:, :, None] & inside_x[:, None, :]


def _masks(regions: RegionsLike, n: int, height: int, width: int, device: torch.device) -> Tensor:
    """``(N, H, W)`` bool masks on ``device``; raises on a shape mismatch or empty mask."""
    r = regions if isinstance(regions, Tensor) else torch.as_tensor(np.asarray(regions))
    r = r.to(device)
    if r.dtype == torch.bool:
        if tuple(r.shape) != (n, height, width):
            raise InvalidInputError(
                f"masks must be bool (N, H, W) = {(n, height, width)} like the maps at input "
                f"resolution, got {tuple(r.shape)}"
            )
        masks = r
    elif r.dim() == 2 and tuple(r.shape) == (n, 4):
        masks = boxes_to_masks(r, height, width)
    else:
        raise InvalidInputError(
            f"regions must be bool masks (N, H, W) or boxes (N, 4) with N = {n}, got "
            f"{r.dtype} {tuple(r.shape)} (masks must have dtype bool)"
        )
    empty = ~masks.flatten(1).any(dim=1)
    if bool(empty.any()):
        rows = empty.nonzero()[:, 0].tolist()
        raise InvalidInputError(
            f"the regions of rows {rows} hold no pixel of the {height}×{width} image; "
            "give each row a non-empty mask or box, or drop the row"
        )
    return masks


def _pool(maps: Tensor, pooling: str) -> Tensor:
    """``(N, H, W)`` relevance ``r ≥ 0`` per pixel from ``(N, C, H, W)`` (Arras et al.)."""
    if pooling == "sum,pos":
        return maps.sum(dim=1).clamp_min(0)
    if pooling == "sum,abs":
        return maps.sum(dim=1).abs()
    if pooling == "max-norm":
        return maps.abs().amax(dim=1)
    if pooling == "l1-norm":
        return maps.abs().sum(dim=1)
    if pooling == "l2-norm":
        return maps.norm(dim=1)
    if pooling == "l2-norm,sq":
        return maps.pow(2).sum(dim=1)
    raise InvalidOptionError(f"unknown pooling {pooling!r} (valid: {', '.join(POOLINGS)})")


def _within(masks: Tensor, tolerance: float) -> Tensor:
    """Pixels at Euclidean distance ≤ ``tolerance`` from the mask (the mask dilated by a
    disk; pixel centres on the integer grid)."""
    if tolerance < 0 or not np.isfinite(tolerance):
        raise InvalidOptionError(f"tolerance must be a distance ≥ 0 in pixels, got {tolerance}")
    radius = int(np.floor(tolerance))
    if radius == 0:
        return masks
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    disk = (offsets[:, None] ** 2 + offsets[None, :] ** 2) <= tolerance**2
    kernel = disk.to(device=masks.device, dtype=torch.float32)[None, None]
    # counts ≤ (2r + 1)² are exact in float32
    spread = F.conv2d(masks[:, None].float(), kernel, padding=radius)[:, 0]
    return spread > 0.5


@dataclass(frozen=True, eq=False, kw_only=True)
class LocalisationResult(MetricResult):
    """A localisation metric's result: ``area_fraction`` ``(N,)`` is the share of each
    image its region covers, the chance level of the metric (module docstring)."""

    area_fraction: Tensor


@dataclass(frozen=True, eq=False, kw_only=True)
class PointingResult(LocalisationResult):
    """:func:`pointing_game`'s result: ``maxima`` ``(N,)`` how many pixels share the
    maximum, ``point`` ``(N, 2)`` (row, column) of the first of them in raster order."""

    maxima: Tensor
    point: Tensor


@dataclass(frozen=True, eq=False, kw_only=True)
class EnergyResult(LocalisationResult):
    """:func:`energy_pointing_game`'s result: ``energy`` ``(N,)`` the total positive
    relevance of each map."""

    energy: Tensor


def _common(
    metric: str,
    method: str,
    scores: Tensor,
    reference: str,
    settings: dict[str, object],
    masks: Tensor,
) -> dict[str, Any]:
    """The fields every localisation result fills alike (scores in [0, 1], higher better)."""
    return {
        "metric": metric,
        "method": method,
        "scores": scores.double().cpu(),
        "higher_is_better": True,
        "value_range": (0.0, 1.0),
        "reference": reference,
        "settings": settings,
        "area_fraction": masks.flatten(1).double().mean(dim=1).cpu(),
    }


# ---------------------------------------------------------------------------- metrics


def pointing_game(
    maps: MapsLike,
    regions: RegionsLike,
    *,
    tolerance: float = 0.0,
    absolute: bool = False,
    ties: str = "average",
) -> PointingResult:
    """Pointing game: is the map's maximum on the object?

    Parameters
    ----------
    maps : Explanation or Tensor
        ``(N, C, H, W)`` or ``(N, H, W)``; the channel sum (``absolute``: of ``|map|``)
        is the relevance of a pixel.
    regions : Tensor, array or sequence
        Bool masks ``(N, H, W)`` or boxes ``(N, 4)``; see the module docstring.
    tolerance : float
        A hit when the maximum lies within this Euclidean distance (pixels, centre to
        centre) of the region. Default 0: the maximum itself must lie in the region, as
        in Quantus. The paper allows 15 px (``tolerance=15``) on PASCAL VOC / COCO images
        of about 500 px; on 224-px inputs 15 px covers about twice the share of the image.
    absolute : bool
        Rank pixels by the channel sum of ``|map|``.
    ties : {"average", "any"}
        Several pixels sharing the maximum: ``"average"`` scores the share of them that
        hit (the expected hit of a uniformly random choice; a constant map scores the
        region's area fraction), ``"any"`` scores 1 if any of them hits (Quantus 0.6).

    Returns
    -------
    PointingResult
        ``scores`` ``(N,)`` in [0, 1] (0 or 1 for a unique maximum); ``area_fraction``,
        ``maxima`` (how many pixels share the maximum) and ``point`` ``(N, 2)`` (row,
        column) of the first maximum in raster order.

    Notes
    -----
    Zhang et al. (2018), IJCV 126:1084–1102. Deviations: a tolerance disk includes its
    boundary (distance ≤ ``tolerance``; TorchRay's reference code uses ``<``, which
    differs only at points exactly 15 px away); the paper averages hits per class over a
    data set, this returns each image's hit (average them as you need); the paper's maps
    have one maximum, ties are ours.
    """
    if ties not in POINTING_TIES:
        raise InvalidOptionError(f"unknown ties {ties!r} (valid: {', '.join(POINTING_TIES)})")
    values, method = _maps(maps)
    n, _c, h, w = values.shape
    masks = _masks(regions, n, h, w, values.device)
    relevance = (values.abs() if absolute else values).sum(dim=1).flatten(1)
    top = relevance == relevance.amax(dim=1, keepdim=True)
    hit = top & _within(masks, float(tolerance)).flatten(1)
    if ties == "average":
        scores = hit.sum(dim=1).double() / top.sum(dim=1).double()
    else:
        scores = hit.any(dim=1).double()
    first = top.double().argmax(dim=1)
    point = torch.stack([first // w, first % w], dim=1)
    settings = {"tolerance": float(tolerance), "absolute": absolute, "ties": ties}
    return PointingResult(
        **_common("pointing_game", method, scores, _ZHANG, settings, masks),
        maxima=top.sum(dim=1).cpu(),
        point=point.cpu(),
    )


def energy_pointing_game(maps: MapsLike, regions: RegionsLike) -> EnergyResult:
    """Energy-based pointing game: the share of the map's positive relevance that lies
    in the region, ``Σ_in max(s, 0) / Σ max(s, 0)`` with ``s`` the channel sum.

    Parameters
    ----------
    maps, regions
        As in :func:`pointing_game`.

    Returns
    -------
    EnergyResult
        ``scores`` ``(N,)`` in [0, 1], NaN for a map with no positive value (nothing to
        locate); ``area_fraction`` (a uniform map's score) and ``energy`` ``(N,)``, the
        total positive relevance.

    Notes
    -----
    Wang et al. (2020), Score-CAM: Score-weighted visual explanations for CNNs, CVPR
    Workshops, Sec. 5.2 — "how much energy of the saliency map falls into the bounding
    box". Deviations: their maps are ReLU'd CAMs, for signed maps we keep the positive part
    (Quantus's ``AttributionLocalisation`` with ``positive_attributions=True``); their code
    min-max scales each map first, which for a map without zeros subtracts its minimum
    and shifts the share towards the area fraction — we use the raw values (scale does
    not matter). Equals :func:`relevance_mass_accuracy` with ``pooling="sum,pos"``.
    """
    values, method = _maps(maps)
    n, _c, h, w = values.shape
    masks = _masks(regions, n, h, w, values.device)
    positive = values.sum(dim=1).clamp_min(0).flatten(1)
    total = positive.sum(dim=1)
    inside = (positive * masks.flatten(1)).sum(dim=1)
    scores = torch.where(total > 0, inside / total, torch.full_like(total, float("nan")))
    return EnergyResult(
        **_common("energy_pointing_game", method, scores, _WANG, {}, masks), energy=total.cpu()
    )


def relevance_mass_accuracy(
    maps: MapsLike, regions: RegionsLike, *, pooling: str = "sum,pos"
) -> LocalisationResult:
    """Relevance mass accuracy: ``Σ_in r / Σ r`` with ``r ≥ 0`` the map pooled over
    channels by ``pooling`` (one of :data:`POOLINGS`, Arras et al.'s six: ``"sum,pos"``
    the positive part of the channel sum, ``"sum,abs"`` its magnitude, ``"max-norm"``,
    ``"l1-norm"``, ``"l2-norm"``, ``"l2-norm,sq"`` over the channels).

    Returns a :class:`LocalisationResult`: NaN for a map whose pooled relevance is all
    zero; ``area_fraction``: a uniform map's score.

    Notes
    -----
    Arras, Osman and Samek (2022), CLEVR-XAI, Information Fusion 81:14–40, and their
    evaluation code. Quantus 0.6's ``RelevanceMassAccuracy`` divides the signed sums
    of the raw map (no pooling), which can leave [0, 1] for signed maps; it equals ours
    on a map that is already non-negative.
    """
    values, method = _maps(maps)
    n, _c, h, w = values.shape
    masks = _masks(regions, n, h, w, values.device)
    r = _pool(values, pooling).flatten(1)
    total = r.sum(dim=1)
    inside = (r * masks.flatten(1)).sum(dim=1)
    scores = torch.where(total > 0, inside / total, torch.full_like(total, float("nan")))
    settings: dict[str, object] = {"pooling": pooling}
    return LocalisationResult(
        **_common("relevance_mass_accuracy", method, scores, _ARRAS, settings, masks)
    )


def relevance_rank_accuracy(
    maps: MapsLike, regions: RegionsLike, *, pooling: str = "sum,pos"
) -> LocalisationResult:
    """Relevance rank accuracy: of the ``K = |region|`` pixels with the highest pooled
    relevance ``r`` (``pooling`` as in :func:`relevance_mass_accuracy`), the share that
    lies in the region.

    Pixels tied at the K-th largest value (the zeros of ``"sum,pos"``, a flat map) count
    by their expected share under a random order of the tie: ``(|above ∩ region| + (K −
    |above|)·|tied ∩ region| / |tied|) / K``, with ``above`` the pixels strictly above it;
    without ties this is the plain count. Returns a :class:`LocalisationResult`
    (``area_fraction``: a uniform map's score).

    Notes
    -----
    Arras, Osman and Samek (2022), CLEVR-XAI, Information Fusion 81:14–40. Deviation:
    their code and Quantus 0.6 take the top K by ``np.argsort``, which orders ties
    arbitrarily; the exact expectation replaces that order.
    """
    values, method = _maps(maps)
    n, _c, h, w = values.shape
    masks = _masks(regions, n, h, w, values.device).flatten(1)
    r = _pool(values, pooling).flatten(1)
    k = masks.sum(dim=1)
    kth = r.sort(dim=1, descending=True).values.gather(1, (k - 1)[:, None])
    above, tied = r > kth, r == kth
    inside_above = (above & masks).sum(dim=1).double()
    share_tied = (tied & masks).sum(dim=1).double() / tied.sum(dim=1).double()
    hits = inside_above + (k - above.sum(dim=1)).double() * share_tied
    settings: dict[str, object] = {"pooling": pooling}
    region = masks.reshape(n, h, w)
    return LocalisationResult(
        **_common("relevance_rank_accuracy", method, hits / k.double(), _ARRAS, settings, region)
    )

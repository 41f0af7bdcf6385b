"""Where a map focuses: the image region that holds most of it, and how concentrated it is.

A plain-language summary of a heatmap needs two facts a reader can check against the
picture: *where* the weight is (a cell of a 3 × 3 grid, named like ``"top-left"``), and
*how concentrated* it is (the share of the total held by the top 10 % of pixels; a map
spread evenly over the image gives 10 %). :func:`focus` computes them from non-negative
weights, e.g. the channel-summed magnitude of an attribution map
(:meth:`seethrough.attribution.Explanation.focus`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ..errors import InvalidInputError, InvalidOptionError

__all__ = ["REGIONS", "TOP_FRACTION", "Focus", "focus", "region_of"]

REGIONS: tuple[tuple[str, ...], ...] = (
    ("top-left", "top", "top-right"),
    ("left", "centre", "right"),
    ("bottom-left", "bottom", "bottom-right"),
)
"""The 3 × 3 grid's cells by (row, column); the keys of the words catalogue's ``region.*``."""

TOP_FRACTION = 0.1
"""The share of pixels whose weight :attr:`Focus.concentration` measures."""


@dataclass(frozen=True)
class Focus:
    """Where one map's weight lies.

    Positions are fractions of the image's height (``row``) and width (``col``), measured
    to pixel centres: pixel ``i`` of ``H`` sits at ``(i + 0.5) / H``, so ``0.5`` is the
    middle.

    Attributes
    ----------
    region : str or None
        The cell of the 3 × 3 grid (:data:`REGIONS`) holding the largest share of the
        weight (ties: the first in reading order); ``None`` when the map's total is zero
        or not finite. Pixel ``i`` of ``H`` belongs to grid row ``floor(3 (i + 0.5) / H)``.
    region_share : float
        The share of the total weight in ``region``.
    region_area : float
        The share of the image's pixels in ``region`` (what ``region_share`` would be
        for a uniform map; ``1/9`` when the size is divisible by 3).
    row, col : float
        The weight's centroid.
    peak_row, peak_col : float
        The position of the largest weight (the first in row-major order on ties).
    peak_region : str or None
        The cell of the 3 × 3 grid holding that pixel.
    concentration : float
        The share of the total weight held by the ``top_fraction`` of pixels with the
        largest weights: ``top_fraction`` for a uniform map, ``1`` when the top pixels
        hold everything.
    top_fraction : float
        The share of pixels counted (``ceil(top_fraction · H · W)`` pixels).

    All numbers are NaN when ``region`` is None.
    """

    region: str | None
    region_share: float
    region_area: float
    row: float
    col: float
    peak_row: float
    peak_col: float
    peak_region: str | None
    concentration: float
    top_fraction: float = TOP_FRACTION


def region_of(row: float, col: float) -> str:
    """The cell of the 3 × 3 grid (:data:`REGIONS`) at position ``(row, col)`` (fractions)."""
    if not (0.0 <= row <= 1.0 and 0.0 <= col <= 1.0):
        raise InvalidInputError(f"a position must be fractions in [0, 1], got ({row}, {col})")
    return REGIONS[min(int(3 * row), 2)][min(int(3 * col), 2)]


def focus(maps: Tensor, top_fraction: float = TOP_FRACTION) -> tuple[Focus, ...]:
    """Where each map's weight lies: its grid region, centroid, peak and concentration.

    Parameters
    ----------
    maps : Tensor
        ``(N, H, W)`` non-negative weights, e.g. ``attributions.abs().sum(dim=1)``.
    top_fraction : float
        The share of pixels whose weight :attr:`Focus.concentration` measures, in (0, 1].

    Returns
    -------
    tuple of Focus
        One per map, computed in float64.

    Raises
    ------
    InvalidInputError
        When ``maps`` is not 3-D, is empty, or holds a negative value (pass the
        magnitude, ``maps.abs()``, or the positive part, ``maps.clamp_min(0)``).
    InvalidOptionError
        When ``top_fraction`` is not in (0, 1].
    """
    if not isinstance(maps, Tensor) or maps.dim() != 3 or maps.numel() == 0:
        shape = tuple(maps.shape) if isinstance(maps, Tensor) else type(maps).__name__
        raise InvalidInputError(f"focus needs non-empty maps shaped (N, H, W), got {shape}")
    if isinstance(top_fraction, bool) or not 0.0 < float(top_fraction) <= 1.0:
        raise InvalidOptionError(f"top_fraction must be in (0, 1], got {top_fraction!r}")
    weights = maps.detach().to("cpu", torch.float64)
    if bool((weights < 0).any()):
        raise InvalidInputError(
            "focus needs non-negative weights; pass the magnitude (maps.abs()) or the "
            "positive part (maps.clamp_min(0))"
        )
    return tuple(_one(w, float(top_fraction)) for w in weights)


def _cells(size: int) -> Tensor:
    """The grid row (or column) of each of ``size`` pixels: ``floor(3 (i + 0.5) / size)``."""
    centres = (torch.arange(size, dtype=torch.float64) + 0.5) / size
    return (3 * centres).floor().long().clamp_max(2)


def _one(w: Tensor, top_fraction: float) -> Focus:
    total = float(w.sum())
    if not math.isfinite(total) or total <= 0.0:
        nan = math.nan
        return Focus(None, nan, nan, nan, nan, nan, nan, None, nan, top_fraction)
    height, width = w.shape
    rows = (torch.arange(height, dtype=torch.float64) + 0.5) / height
    cols = (torch.arange(width, dtype=torch.float64) + 0.5) / width
    grid = torch.zeros(9, dtype=torch.float64)
    area = torch.zeros(9, dtype=torch.float64)
    cell = (_cells(height)[:, None] * 3 + _cells(width)[None, :]).flatten()
    grid.index_add_(0, cell, w.flatten())
    area.index_add_(0, cell, torch.ones_like(w).flatten())
    best = int(grid.argmax())  # the first maximum in reading order
    peak = int(w.flatten().argmax())
    peak_cell = int(cell[peak])
    k = math.ceil(top_fraction * height * width - 1e-9)  # guard 0.1 · 100 = 10.000000000000002
    top = w.flatten().topk(k).values.sum()
    return Focus(
        region=REGIONS[best // 3][best % 3],
        region_share=float(grid[best]) / total,
        region_area=float(area[best]) / (height * width),
        row=float((w.sum(dim=1) * rows).sum()) / total,
        col=float((w.sum(dim=0) * cols).sum()) / total,
        peak_row=float(rows[peak // width]),
        peak_col=float(cols[peak % width]),
        peak_region=REGIONS[peak_cell // 3][peak_cell % 3],
        concentration=float(top) / total,
        top_fraction=top_fraction,
    )

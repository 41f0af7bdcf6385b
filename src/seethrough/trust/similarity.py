"""How similar two saliency maps are: the measures of Adebayo et al. (2018).

Every function takes two batches of maps ``(N, C, H, W)`` (or ``(N, H, W)``) at the same
resolution — upsample layer-resolution CAMs first — and returns one similarity per image
as a float64 tensor ``(N,)``. They call scipy and scikit-image; nothing is re-implemented.

Maps are first *reduced* as in the paper's code (PAIR's ``VisualizeImageGrayscale`` and
``VisualizeImageDiverging``):

* ``absolute=True``: ``S = Σ_c |M_c|``, scaled by its 99th percentile and clipped to
  [0, 1] (the top 1 % ties at 1);
* ``absolute=False``: ``S = Σ_c M_c``, ``clip((S + p) / 2p, −1, 1)`` with ``p = |P99(S)|``.

Then:

* :func:`spearman` — Spearman's rank correlation of the reduced maps (``scipy.stats``);
  ``foreground`` restricts it to chosen pixels (e.g. the garment, not Fashion-MNIST's
  empty black background, which otherwise inflates every correlation);
* :func:`ssim` — structural similarity (``skimage.metrics.structural_similarity``) of the
  absolute reduced maps, Gaussian window σ = 1.5, data range 1;
* :func:`hog_similarity` — Pearson correlation of the HOG descriptors
  (``skimage.feature.hog``, 9 orientations, 3×3 cells per block) of the absolute reduced
  maps, as the paper; ``correlation="spearman"`` gives the rank correlation earlier
  versions of this library reported. Cells of ``max(4, H // 14)`` pixels (16 at 224 px
  as in the paper; 4 at 28 px).

The paper's notebook ran SSIM and HOG on per-array min-max RGB maps; we use the reduced
map for all three so that maps with different channel counts (Grad-CAM vs gradients)
compare on the same footing, and say so here.

A constant map has no ranks: Spearman and HOG similarity are NaN for it (never a made-up
0 or 1). :func:`constant_maps` flags those images so that results can count them.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from torch import Tensor

from ..errors import InvalidInputError, InvalidOptionError

__all__ = [
    "CLIP_PERCENTILE",
    "HOG_CORRELATIONS",
    "RankedMaps",
    "constant_maps",
    "hog_similarity",
    "reduce_maps",
    "spearman",
    "ssim",
]

CLIP_PERCENTILE = 99.0


def _as_batch(maps: Tensor, name: str) -> np.ndarray:
    if not isinstance(maps, Tensor) or maps.dim() not in (3, 4):
        raise InvalidInputError(
            f"{name} must be a tensor of maps (N, C, H, W) or (N, H, W), "
            f"got {getattr(maps, 'shape', type(maps).__name__)}"
        )
    array = maps.detach().to("cpu", torch.float64).numpy()
    return array if array.ndim == 4 else array[:, None]


def reduce_maps(maps: Tensor, absolute: bool) -> np.ndarray:
    """The paper's reduction of ``(N, C, H, W)`` maps to ``(N, H, W)`` (module doc)."""
    array = _as_batch(maps, "maps")
    if absolute:
        summed = np.abs(array).sum(axis=1)
        low = summed.min(axis=(1, 2), keepdims=True)
        high = np.percentile(summed, CLIP_PERCENTILE, axis=(1, 2), keepdims=True)
        span = np.where(high > low, high - low, 1.0)
        return np.clip((summed - low) / span, 0.0, 1.0)
    summed = array.sum(axis=1)
    p = np.abs(np.percentile(summed, CLIP_PERCENTILE, axis=(1, 2), keepdims=True))
    p = np.where(p > 0, p, 1.0)
    return np.clip((summed + p) / (2 * p), -1.0, 1.0)


def _pair(a: Tensor, b: Tensor, absolute: bool) -> tuple[np.ndarray, np.ndarray]:
    ra, rb = reduce_maps(a, absolute), reduce_maps(b, absolute)
    if ra.shape != rb.shape:
        raise InvalidInputError(
            f"the maps differ in shape: {tuple(a.shape)} vs {tuple(b.shape)}; compare maps of "
            "the same images at the same resolution (upsample CAMs with to_input_size())"
        )
    return ra, rb


def constant_maps(maps: Tensor) -> Tensor:
    """``(N,)`` bool: images whose map has a single value (no ranks to correlate)."""
    array = _as_batch(maps, "maps").reshape(len(maps), -1)
    return torch.from_numpy(array.max(axis=1) == array.min(axis=1))


def _spearman_1d(x: np.ndarray, y: np.ndarray) -> float:
    from scipy.stats import spearmanr

    if x.size < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(spearmanr(x, y).statistic)


def _pearson_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of each row pair of ``(N, P)`` arrays (NaN where one is flat)."""
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    denominator = np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (a * b).sum(axis=1) / denominator
    r = np.where(denominator > 0, np.clip(r, -1.0, 1.0), np.nan)
    return np.asarray(r, dtype=np.float64)


class RankedMaps:
    """Reduced maps with their ranks, computed once: a reference that many maps are
    compared with (the trained model's map at every randomization step).

    Spearman's ρ is the Pearson correlation of the ranks (``scipy.stats.rankdata``,
    ties averaged), as ``scipy.stats.spearmanr`` computes it.
    """

    def __init__(
        self, maps: Tensor, *, absolute: bool = True, foreground: Tensor | None = None
    ) -> None:
        from scipy.stats import rankdata

        self.reduced = reduce_maps(maps, absolute)
        self.absolute = absolute
        self.shape = tuple(maps.shape)
        flat = self.reduced.reshape(len(self.reduced), -1)
        self.mask: np.ndarray | None = None
        if foreground is not None:
            mask = foreground.detach().to("cpu", torch.bool).numpy()
            if mask.size != flat.size:
                raise InvalidInputError(
                    f"foreground has shape {tuple(foreground.shape)}; it must be (N, H, W) "
                    f"= {self.reduced.shape}, one flag per pixel of the maps"
                )
            self.mask = mask.reshape(flat.shape)
            pixels = [row[m] for row, m in zip(flat, self.mask)]
            self.ranks: list[np.ndarray] | np.ndarray = [rankdata(p) for p in pixels]
            self.flat_ok = [p.size >= 2 and np.ptp(p) > 0 for p in pixels]
        else:
            self.ranks = rankdata(flat, axis=1)
            self.flat_ok = list(np.ptp(flat, axis=1) > 0) if flat.shape[1] >= 2 else []

    def spearman(self, other: RankedMaps) -> Tensor:
        """``(N,)`` Spearman's ρ between these maps and ``other`` (same images, same size)."""
        if self.reduced.shape != other.reduced.shape:
            raise InvalidInputError(
                f"the maps differ in shape: {self.shape} vs {other.shape}; compare maps of "
                "the same images at the same resolution (upsample CAMs with to_input_size())"
            )
        same = (
            self.mask is None
            if other.mask is None
            else self.mask is not None and np.array_equal(self.mask, other.mask)
        )
        if not same:
            raise InvalidInputError("compare maps ranked with the same foreground")
        n = len(self.reduced)
        ok = np.array(
            [
                i < len(self.flat_ok)
                and i < len(other.flat_ok)
                and bool(self.flat_ok[i])
                and bool(other.flat_ok[i])
                for i in range(n)
            ]
        )
        if isinstance(self.ranks, np.ndarray) and isinstance(other.ranks, np.ndarray):
            values = _pearson_rows(self.ranks, other.ranks)
        else:
            values = np.array(
                [_pearson_rows(a[None], b[None])[0] for a, b in zip(self.ranks, other.ranks)]
            )
        return torch.from_numpy(np.where(ok, values, np.nan).astype(np.float64))


def spearman(
    a: Tensor, b: Tensor, *, absolute: bool = True, foreground: Tensor | None = None
) -> Tensor:
    """Spearman rank correlation per image of the reduced maps (module doc).

    ``foreground`` ``(N, H, W)`` bool restricts the correlation to those pixels.
    """
    return RankedMaps(a, absolute=absolute, foreground=foreground).spearman(
        RankedMaps(b, absolute=absolute, foreground=foreground)
    )


def ssim(a: Tensor, b: Tensor) -> Tensor:
    """Structural similarity per image of the absolute reduced maps (module doc)."""
    from skimage.metrics import structural_similarity

    ra, rb = _pair(a, b, absolute=True)
    values = [
        float(
            structural_similarity(
                x, y, data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
            )
        )
        for x, y in zip(ra, rb)
    ]
    return torch.tensor(values, dtype=torch.float64)


def hog_cell(size: int) -> int:
    """HOG cell side for maps of ``size`` pixels: 16 at 224 px, at least 4."""
    return max(4, size // 14)


HOG_CORRELATIONS = ("pearson", "spearman")


def hog_similarity(a: Tensor, b: Tensor, *, correlation: str = "pearson") -> Tensor:
    """Correlation per image of the HOG descriptors of the absolute reduced maps.

    Parameters
    ----------
    a, b : Tensor
        Maps ``(N, C, H, W)`` or ``(N, H, W)`` of the same images at the same size.
    correlation : {"pearson", "spearman"}
        ``"pearson"`` (default): Pearson's r of the descriptors, as Adebayo et al.
        (2018). ``"spearman"``: Spearman's ρ — a deviation from the paper, kept for
        comparison with earlier results of this library (it is what ``hog`` meant
        before).

    Returns
    -------
    Tensor
        ``(N,)`` float64; NaN where a descriptor is constant.
    """
    from skimage.feature import hog

    if correlation not in HOG_CORRELATIONS:
        raise InvalidOptionError(
            f"unknown correlation {correlation!r} (valid: {', '.join(HOG_CORRELATIONS)})"
        )
    ra, rb = _pair(a, b, absolute=True)
    cell = hog_cell(min(ra.shape[1:]))
    if min(ra.shape[1:]) < 3 * cell:
        raise InvalidInputError(
            f"maps of {ra.shape[1]}×{ra.shape[2]} pixels are too small for HOG "
            f"(3×3 cells of {cell} px); upsample them first"
        )

    def describe(m: np.ndarray) -> np.ndarray:
        return np.asarray(
            hog(m, orientations=9, pixels_per_cell=(cell, cell), cells_per_block=(3, 3))
        )

    pairs = [(describe(x), describe(y)) for x, y in zip(ra, rb)]
    if correlation == "spearman":
        return torch.tensor([_spearman_1d(x, y) for x, y in pairs], dtype=torch.float64)
    if not pairs:
        return torch.zeros(0, dtype=torch.float64)
    first = np.stack([x for x, _ in pairs])
    second = np.stack([y for _, y in pairs])
    return torch.from_numpy(_pearson_rows(first, second))

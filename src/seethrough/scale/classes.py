"""Per-class summaries of a dataset's explanations: mean maps and how concentrated they are.

:func:`class_maps` streams the maps of one method out of a run
(:func:`seethrough.data.shards.open_run`) — or takes them as a tensor — and keeps, per
class, the running sum of the maps (for the mean map) and one number per image (the
share of the map's absolute mass in its top 10 % of pixels, :func:`top_share`); memory is
bounded by one batch of maps plus ``K`` mean maps (and one float per image).

The helpers :func:`channel_sum` and :func:`sum_pool` prepare maps the way the SpRAy
pipeline does (Lapuschkin et al., 2019; :mod:`seethrough.scale.spray`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..core.focus import TOP_FRACTION
from ..core.stats import Interval, mean_ci
from ..errors import InvalidInputError, InvalidOptionError

if TYPE_CHECKING:
    from ..words import Description

__all__ = [
    "BY",
    "By",
    "ClassMaps",
    "channel_sum",
    "class_maps",
    "run_classes",
    "sum_pool",
    "top_share",
]


By = Literal["label", "target", "predicted"]
BY: tuple[str, ...] = ("label", "target", "predicted")
"""Index columns that can assign an image to a class."""


def channel_sum(maps: Tensor) -> Tensor:
    """``(N, H, W)`` maps from ``(N, H, W)`` or ``(N, C, H, W)`` (channels summed), float64.

    Raises
    ------
    InvalidInputError
        For any other shape, or non-finite values.
    """
    if not isinstance(maps, Tensor):
        raise InvalidInputError(
            f"maps must be a tensor (N, H, W) or (N, C, H, W), not {type(maps)}"
        )
    if maps.dim() == 4:
        maps = maps.sum(dim=1, dtype=torch.float64)
    elif maps.dim() != 3:
        raise InvalidInputError(
            f"maps must be (N, H, W) or (N, C, H, W), got shape {tuple(maps.shape)}"
        )
    maps = maps.detach().to("cpu", torch.float64)
    if not bool(torch.isfinite(maps).all()):
        raise InvalidInputError("maps hold NaN or infinite values; explain with nonfinite='raise'")
    return maps


def sum_pool(maps: Tensor, size: int | None) -> Tensor:
    """Downsize ``(N, H, W)`` maps by sum pooling to at most ``size`` × ``size``.

    The block is ``ceil(H / size)`` × ``ceil(W / size)`` pixels; the map is padded with
    zeros at the bottom and right to a multiple of the block (as ``skimage.measure.
    block_reduce``, which the authors' CoRelAy pipeline uses, does). A map no larger than
    ``size`` is returned as is (never upsampled); ``size=None`` keeps every map as is.
    Sum pooling keeps each map's total (its sum) exactly.
    """
    if size is None:
        return maps
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise InvalidOptionError(f"size must be a positive int or None, got {size!r}")
    h, w = maps.shape[-2:]
    bh, bw = math.ceil(h / size), math.ceil(w / size)
    if bh == 1 and bw == 1:
        return maps
    padded = F.pad(maps, (0, -w % bw, 0, -h % bh))
    n, hp, wp = padded.shape
    return padded.reshape(n, hp // bh, bh, wp // bw, bw).sum(dim=(2, 4))


def top_share(maps: Tensor, fraction: float = TOP_FRACTION) -> Tensor:
    """Share of each map's absolute mass held by its top ``fraction`` of pixels, ``(N,)``.

    The weights are ``|A|`` (summed over channels for ``(N, C, H, W)``); the share is the
    sum of the ``ceil(fraction · H · W)`` largest weights over the sum of all — the
    definition of :attr:`seethrough.core.focus.Focus.concentration` and of a dataset
    run's ``<method>.top10_share`` index column: ``fraction`` for a flat map (when
    ``fraction · H · W`` is whole), 1 when those pixels hold everything. NaN for an
    all-zero map. float64.

    Parameters
    ----------
    maps : Tensor
        ``(N, H, W)`` or ``(N, C, H, W)``.
    fraction : float
        In (0, 1]; default 0.1.
    """
    if isinstance(fraction, bool) or not 0 < fraction <= 1:
        raise InvalidOptionError(f"fraction must be in (0, 1], got {fraction!r}")
    if not isinstance(maps, Tensor) or maps.dim() not in (3, 4):
        shape = tuple(maps.shape) if isinstance(maps, Tensor) else type(maps).__name__
        raise InvalidInputError(f"maps must be (N, H, W) or (N, C, H, W), got {shape}")
    weights = maps.detach().to("cpu", torch.float64).abs()
    if weights.dim() == 4:
        weights = weights.sum(dim=1)
    return share_of_top(weights.flatten(1), fraction)


def share_of_top(weights: Tensor, fraction: float = TOP_FRACTION) -> Tensor:
    """:func:`top_share` of flattened weights ``(N, P)``, float64 and ``>= 0``."""
    n, size = weights.shape
    if n == 0 or size == 0:
        return torch.full((n,), torch.nan, dtype=torch.float64)
    k = math.ceil(fraction * size - 1e-9)  # guard 0.1 · 100 = 10.000000000000002
    top = weights.topk(k, dim=1, sorted=False).values.sum(dim=1)
    total = weights.sum(dim=1)
    return torch.where(total > 0, top / total.clamp_min(1e-300), torch.nan)


@dataclass(frozen=True, eq=False)
class ClassMaps:
    """Per-class mean maps and concentration of one method's maps over a dataset.

    Attributes
    ----------
    classes : tuple of int
        The classes found (ascending), one entry per row of ``mean_maps``.
    names : tuple of str, or None
        Their names, when the run knows them.
    counts : tuple of int
        Images per class.
    mean_maps : Tensor
        ``(K, h, w)`` float64: the mean of the class's maps (channels summed; sum-pooled
        to at most ``size`` when ``size`` was given). Signed, not normalised.
    concentration : tuple of Interval or None
        Per class: the mean over its images of :func:`top_share` (the share of ``|map|``
        in the top 10 % of pixels: 0.1 for a flat map, 1.0 when all relevance lies in a
        tenth of the image) with a percentile bootstrap interval over images
        (:func:`seethrough.core.stats.mean_ci`); per image, a run's index column
        ``<method>.top10_share`` when it has one, else measured on the maps as stored
        (before pooling; ``settings["concentration_from"]``); all-zero maps are left out.
        None for a class with fewer than two such maps.
    method : str or None
        The map's name (the method).
    by : str
        How images were assigned to classes (``"label"``, ``"target"``, ``"predicted"``,
        or ``"given"`` for tensors).
    settings : Mapping
        ``size``, ``top`` (the fraction), ``concentration_from``, ``level``,
        ``resamples``, ``seed``.
    """

    classes: tuple[int, ...]
    names: tuple[str, ...] | None
    counts: tuple[int, ...]
    mean_maps: Tensor
    concentration: tuple[Interval | None, ...]
    method: str | None
    by: str
    settings: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (mean maps as nested lists)."""
        return {
            "method": self.method,
            "by": self.by,
            "settings": dict(self.settings),
            "images": int(sum(self.counts)),
            "class_count": len(self.classes),
            "classes": [
                {
                    "class": c,
                    "name": self.names[i] if self.names is not None else None,
                    "count": self.counts[i],
                    "concentration": _interval_dict(self.concentration[i]),
                    "mean_map": self.mean_maps[i].tolist(),
                }
                for i, c in enumerate(self.classes)
            ],
        }

    def describe(self) -> Description:
        """The result in words (English and Chinese: ``.text("zh")``)."""
        from .describe import describe_class_maps

        return describe_class_maps(self)


def _interval_dict(interval: Interval | None) -> dict[str, Any] | None:
    if interval is None:
        return None
    return {
        "estimate": interval.estimate,
        "low": interval.low,
        "high": interval.high,
        "level": interval.level,
        "n": interval.n,
    }


class _Accumulator:
    """Running per-class sums of maps and the per-image shares (bounded memory)."""

    def __init__(self, size: int | None, fraction: float) -> None:
        self.size, self.fraction = size, fraction
        self.sums: dict[int, Tensor] = {}
        self.counts: dict[int, int] = {}
        self.shares: dict[int, list[np.ndarray]] = {}
        self.shape: tuple[int, ...] | None = None
        self.source = "maps"  # where the per-image shares come from

    def add(self, maps: Tensor, classes: np.ndarray, shares: np.ndarray | None = None) -> None:
        summed = channel_sum(maps)
        shape = tuple(summed.shape[-2:])
        if self.shape is not None and shape != self.shape:
            raise InvalidInputError(
                f"maps of different sizes: {self.shape} and {shape}; "
                "store the run's maps at one size (the model's input size)"
            )
        self.shape = shape
        if shares is None:
            shares = top_share(maps, self.fraction).numpy()
        pooled = sum_pool(summed, self.size)
        for c in np.unique(classes):
            if c < 0:
                continue  # no class (unlabelled image)
            pick = torch.from_numpy(np.flatnonzero(classes == c))
            total = pooled[pick].sum(dim=0)
            key = int(c)
            self.sums[key] = self.sums[key] + total if key in self.sums else total
            self.counts[key] = self.counts.get(key, 0) + len(pick)
            self.shares.setdefault(key, []).append(shares[pick.numpy()])

    def result(
        self,
        names: Sequence[str] | None,
        method: str | None,
        by: str,
        level: float,
        resamples: int,
        seed: int,
    ) -> ClassMaps:
        if not self.counts:
            raise InvalidInputError("no image with a class: nothing to summarise")
        classes = tuple(sorted(self.counts))
        concentration: list[Interval | None] = []
        for c in classes:
            values = np.concatenate(self.shares[c])
            values = values[np.isfinite(values)]
            if len(values) < 2:
                concentration.append(None)
            else:
                (interval,) = mean_ci(values, level=level, resamples=resamples, seed=seed)
                concentration.append(interval)
        known = names is not None and all(0 <= c < len(names) for c in classes)
        return ClassMaps(
            classes=classes,
            names=tuple(names[c] for c in classes) if known and names is not None else None,
            counts=tuple(self.counts[c] for c in classes),
            mean_maps=torch.stack([self.sums[c] / self.counts[c] for c in classes]),
            concentration=tuple(concentration),
            method=method,
            by=by,
            settings={
                "size": self.size,
                "top": self.fraction,
                "concentration_from": self.source,
                "level": level,
                "resamples": resamples,
                "seed": seed,
            },
        )


def run_classes(run: Any, by: str) -> np.ndarray:
    """The class of every row of a run's index (``by``: an index column; -1: none)."""
    if by not in BY:
        raise InvalidOptionError(f"unknown by={by!r} (valid: {', '.join(BY)})")
    index = run.index
    if by not in index.column_names:
        raise InvalidInputError(
            f"the run's index has no column {by!r} (columns: {', '.join(index.column_names)})"
        )
    return np.asarray(index.column(by).to_numpy(zero_copy_only=False), dtype=np.int64)


def run_class_names(run: Any) -> tuple[str, ...] | None:
    """Class names recorded in a run's manifest (``info.classes`` or ``classes``), if any."""
    manifest = getattr(run, "manifest", {}) or {}
    for holder in (manifest.get("info") or {}, manifest, getattr(run, "config", {}) or {}):
        names = holder.get("classes") if isinstance(holder, Mapping) else None
        if isinstance(names, (list, tuple)) and all(isinstance(n, str) for n in names):
            return tuple(names)
    return None


def _batches(run: Any, method: str, batch: int) -> Iterator[tuple[np.ndarray, Tensor]]:
    if method not in run.names:
        raise InvalidOptionError(
            f"the run has no maps named {method!r} (stored: {', '.join(run.names)})"
        )
    yield from run.iter_maps(method, batch=batch)


def class_maps(
    data: Any,
    method: str | None = None,
    *,
    labels: Any = None,
    by: By = "label",
    size: int | None = None,
    names: Sequence[str] | None = None,
    fraction: float = TOP_FRACTION,
    level: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
    batch: int = 256,
) -> ClassMaps:
    """Per-class mean maps and concentration, streamed (bounded memory).

    Parameters
    ----------
    data : Run or Tensor
        A run (:func:`seethrough.data.shards.open_run`): its maps named ``method`` are read
        ``batch`` images at a time and the class of each image is the index column ``by``.
        Or the maps themselves, ``(N, H, W)`` or ``(N, C, H, W)``, with ``labels``.
    method : str
        The maps' name in the run (required for a run; recorded for a tensor).
    labels : array-like (N,), optional
        For a tensor: the class of each map (-1: none, left out).
    by : {"label", "target", "predicted"}
        For a run: which index column assigns classes.
    size : int, optional
        Sum-pool the mean maps to at most ``size`` × ``size`` (:func:`sum_pool`).
    names : sequence of str, optional
        Class names by index (a run's recorded names are used otherwise).
    fraction, level, resamples, seed
        The concentration's top fraction (:func:`top_share`) and its bootstrap interval.
        For a run with the default fraction, the per-image shares are the index column
        ``<method>.top10_share`` (measured by the runner on the maps before float16
        storage and channel summing); otherwise they are measured on the stored maps
        (``settings["concentration_from"]`` says which).

    Returns
    -------
    ClassMaps

    Raises
    ------
    InvalidInputError, InvalidOptionError
        A tensor without labels (or labels of another length), an unknown map name or
        ``by`` column, no image with a class.
    """
    if batch < 1:
        raise InvalidOptionError(f"batch must be positive, got {batch!r}")
    acc = _Accumulator(size, fraction)
    if isinstance(data, Tensor):
        if labels is None:
            raise InvalidInputError("class_maps of a tensor needs labels= (the class of each map)")
        classes = np.asarray(torch.as_tensor(labels).cpu(), dtype=np.int64).reshape(-1)
        if len(classes) != len(data):
            raise InvalidInputError(f"{len(classes)} labels for {len(data)} maps")
        for start in range(0, len(data), batch):
            acc.add(data[start : start + batch], classes[start : start + batch])
        return acc.result(names, method, "given", level, resamples, seed)
    if method is None:
        raise InvalidOptionError(
            f"class_maps of a run needs method= (stored: {', '.join(data.names)})"
        )
    classes = run_classes(data, by)
    column = f"{method}.top10_share"
    stored = None
    if fraction == TOP_FRACTION and column in data.index.column_names:
        # the runner's own value, measured on the full-precision maps before storage
        stored = np.asarray(data.index.column(column).to_numpy(zero_copy_only=False), np.float64)
        acc.source = "index"
    for rows, maps in _batches(data, method, batch):
        positions = np.asarray(rows, dtype=np.int64)
        shares = stored[positions] if stored is not None else None
        acc.add(maps, classes[positions], shares)
    run_names = names if names is not None else run_class_names(data)
    return acc.result(run_names, method, by, level, resamples, seed)

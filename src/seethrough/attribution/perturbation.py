"""Perturbation methods: occlusion and RISE. Forward passes only, no gradients.

Both build their perturbed inputs chunk by chunk, on the inputs' device, inside the
shared budget: the occluded images or masked copies never exist all at once.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from ..core.baselines import BaselineLike, make_baseline
from ..core.budget import Budget
from ..core.passes import forward_scores
from ..core.targets import Target, logits_of
from ..errors import (
    InvalidOptionError,
    OptionCheck,
    TargetError,
    instance_of,
    integer,
    number,
    one_of,
    option,
    optional,
)
from .explanation import Details, Explanation
from .method import Attribution, Method, register
from .run import PassContext

__all__ = [
    "BASELINES",
    "Occlusion",
    "OcclusionDetails",
    "OcclusionExplanation",
    "Rise",
    "RiseMasks",
    "SCORES",
    "forward_probabilities",
    "window_starts",
]

BASELINES = ("zeros", "blur", "mean")
SCORES = ("logit", "probability")  # what RISE averages: the target's logit or probability


def forward_probabilities(
    model: torch.nn.Module,
    rows: Callable[[int, int], Tensor],
    total: int,
    classes: Tensor,
    budget: Budget,
) -> Tensor:
    """The probability ``softmax(logits)[classes[r]]`` of every row ``r`` ``(total,)``,
    chunk by chunk under ``inference_mode``; ``classes`` must be checked class indices
    (from a pass's ``select``, argmax or top-k)."""
    parts: list[Tensor] = []

    def step(start: int, stop: int) -> None:
        x = budget.arrange(model, rows(start, stop))
        with torch.inference_mode():
            logits = logits_of(model(x))
            picked = classes[start:stop, None].to(logits.device)
            parts.append(torch.softmax(logits, dim=1).gather(1, picked)[:, 0].detach())

    budget.run(total, step)
    return torch.cat(parts)  # outside inference_mode: an ordinary tensor


def needs_classes(method: str, option: str, target: Target) -> None:
    """Raise :class:`TargetError` for a callable target where ``option`` needs classes."""
    if target.fn is not None:
        raise TargetError(
            f"{method} with {option} needs class targets (a class probability); a callable "
            "target has no class — return a probability from the callable instead, or "
            "use the default"
        )


BASELINE = one_of(*BASELINES) | number() | instance_of(Tensor, "a tensor")
"""The baselines occlusion and RISE accept: a kind's name, a constant or a tensor."""


def _is_size(value: object) -> bool:
    def positive(v: object) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and v >= 1

    if isinstance(value, (tuple, list)):
        return len(value) == 2 and all(positive(v) for v in value)
    return positive(value)


SIZE = OptionCheck(_is_size, "a positive integer or (height, width), a pair of them")
"""A window or stride: one side for both, or (height, width)."""


def _pair(value: int | tuple[int, int], name: str) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in pair
    ):
        raise InvalidOptionError(f"{name} must be a positive int or (height, width), got {value!r}")
    return pair[0], pair[1]


def window_starts(size: int, window: int, stride: int) -> list[int]:
    """Where the windows of one axis start, as in Captum's ``Occlusion``: every
    ``stride`` pixels from 0, ``ceil((size − window) / stride) + 1`` of them; the last
    one may run past the edge and is clipped to the image."""
    if window > size:
        raise InvalidOptionError(
            f"the occlusion window ({window}) is larger than the image ({size})"
        )
    return [k * stride for k in range(math.ceil((size - window) / stride) + 1)]


def _coverage(starts: list[int], window: int, size: int, like: Tensor) -> Tensor:
    """``(windows, size)``: 1 where each window of one axis covers the pixel."""
    pixel = torch.arange(size, device=like.device)
    first = torch.tensor(starts, device=like.device)[:, None]
    return ((pixel >= first) & (pixel < first + window)).to(like.dtype)


@dataclass(frozen=True, eq=False, kw_only=True)
class OcclusionDetails(Details):
    """Occlusion's score drops and window counts: see :class:`OcclusionExplanation`."""

    score_drops: Tensor
    windows_per_pixel: Tensor


@dataclass(frozen=True, eq=False, kw_only=True)
class OcclusionExplanation(Explanation, OcclusionDetails):
    """Occlusion, with the score drop of every window position.

    ``score_drops`` is ``(N, rows, cols)``: ``f(x) − f(x with the window at that position
    replaced by the baseline)``; ``windows_per_pixel`` ``(H, W)`` counts the windows that
    cover each pixel (the divisor of the attributions).
    """


@register
@dataclass(frozen=True, kw_only=True)
class Occlusion(Method):
    """Occlusion: the drop of the target score when a window of the image is replaced
    by a baseline, averaged over the windows that cover each pixel.

    Zeiler & Fergus (2014), "Visualizing and Understanding Convolutional Networks".
    Windows span all channels and slide by ``stride`` from the top-left corner; their
    placement and the per-pixel average are those of Captum's ``Occlusion`` (sliding
    window ``(C, h, w)``, strides ``(C, sh, sw)``), so every channel of a pixel gets the
    same value. One forward pass per window position and image.

    Parameters
    ----------
    window : int or (int, int)
        Window height and width in pixels (default 32).
    stride : int or (int, int) or None
        Step between windows (default: half the window, at least 1); at most the window,
        so that every pixel is covered.
    baseline : str, float or Tensor
        What replaces the window: ``"zeros"`` (default), ``"blur"``, ``"mean"``, a
        constant or a tensor (see :func:`~seethrough.core.baselines.make_baseline`).
    blur_sigma : float
        Standard deviation in pixels of the ``"blur"`` baseline (default 10).
    """

    window: int | tuple[int, int] = option(32, check=SIZE)
    stride: int | tuple[int, int] | None = option(None, check=optional(SIZE))
    baseline: BaselineLike = option("zeros", check=BASELINE)
    blur_sigma: float = option(10.0, check=number(above=0))

    name = "occlusion"
    result_type = OcclusionExplanation

    def validate(self) -> None:
        window = _pair(self.window, "window")
        stride = self.strides()
        if stride[0] > window[0] or stride[1] > window[1]:
            raise InvalidOptionError(
                f"stride {stride} is larger than the window {window}: some pixels would "
                "never be occluded"
            )

    def strides(self) -> tuple[int, int]:
        """The stride (height, width), default half the window."""
        if self.stride is None:
            h, w = _pair(self.window, "window")
            return max(1, h // 2), max(1, w // 2)
        return _pair(self.stride, "stride")

    def attribute_rows(self, ctx: PassContext, x: Tensor, target: Target) -> Attribution:
        (wh, ww), (sh, sw) = _pair(self.window, "window"), self.strides()
        rows_at = _coverage(window_starts(x.shape[2], wh, sh), wh, x.shape[2], x)
        cols_at = _coverage(window_starts(x.shape[3], ww, sw), ww, x.shape[3], x)
        target, scores, predicted = ctx.resolve(x, target)
        base = make_baseline(self.baseline, x, kinds=BASELINES, blur_sigma=self.blur_sigma)
        windows = len(rows_at) * len(cols_at)
        ctx.plan_more_rows(len(x) * windows)  # planned_rows counted only the clean pass

        def occluded(start: int, stop: int) -> Tensor:
            # rows are image-major: row r occludes window r % windows of image r // windows
            r = torch.arange(start, stop, device=x.device)
            image, window = r // windows, r % windows
            covered = (
                rows_at[window // len(cols_at), :, None] * cols_at[window % len(cols_at), None]
            )
            return torch.where(covered[:, None].bool(), base[image], x[image])

        rows_target = (
            target
            if target.indices is None
            else target.fixed(target.indices.repeat_interleave(windows))
        )
        occluded_scores, _ = forward_scores(
            ctx.model, occluded, len(x) * windows, rows_target, ctx.budget
        )
        drops = scores[:, None, None] - occluded_scores.view(len(x), len(rows_at), len(cols_at))
        counts = rows_at.sum(0)[:, None] * cols_at.sum(0)
        summed = torch.einsum("yh,nyx,xw->nhw", rows_at, drops, cols_at)
        values = (summed / counts)[:, None].expand_as(x).contiguous()
        details = OcclusionDetails(score_drops=drops, windows_per_pixel=counts)
        indices = target.indices_or_unknown(len(x), x.device)
        return Attribution(values, scores, indices, predicted, details)


def _mirror_upsampling(cells: int, cell: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """``((cells + 1) · cell, cells)``: bilinear resizing of a grid axis of ``cells`` to
    ``(cells + 1) · cell`` pixels, pixel centres aligned, mirrored at the edges —
    ``skimage.transform.resize(order=1, mode="reflect")`` as in the RISE reference code."""
    up = (cells + 1) * cell
    where = (torch.arange(up, dtype=torch.float64) + 0.5) * cells / up - 0.5
    below = torch.floor(where)
    frac = where - below
    matrix = torch.zeros(up, cells, dtype=torch.float64)
    for offset, weight in ((0, 1 - frac), (1, frac)):
        index = below.long() + offset
        index = torch.where(index < 0, -index, index)
        index = torch.where(index > cells - 1, 2 * (cells - 1) - index, index)
        matrix.index_put_((torch.arange(up), index.clamp(0, cells - 1)), weight, accumulate=True)
    return matrix.to(device, dtype)


class RiseMasks:
    """The RISE masks of one call, made on demand: ``masks(start, stop)``.

    The binary ``cell × cell`` grids (``P(1) = probability``) and the random shifts are
    drawn at once (they are small) from one CPU generator seeded with ``seed``: the
    masks are the same on every device and for every dtype. The ``(H, W)`` masks are
    upsampled from them per chunk, the same however the work is chunked. Each grid is
    resized bilinearly to ``(cell + 1) · ⌈H/cell⌉`` by ``(cell + 1) · ⌈W/cell⌉`` and
    cropped to ``H × W`` at a random offset below one cell, as in Petsiuk et al.'s
    reference code.
    """

    def __init__(
        self,
        count: int,
        cell: int,
        probability: float,
        size: tuple[int, int],
        seed: int,
        dtype: torch.dtype,
        device: torch.device,
    ) -> None:
        # drawn on the CPU (a few numbers per mask): the same masks on every device
        generator = torch.Generator().manual_seed(seed)
        grids = torch.rand((count, cell, cell), generator=generator, dtype=torch.float64)
        self.grids = (grids < probability).to(device, dtype)
        self.size = size
        steps = [math.ceil(s / cell) for s in size]
        self.shifts = [
            torch.randint(0, step, (count,), generator=generator).to(device) for step in steps
        ]
        self.upsampling = [_mirror_upsampling(cell, step, dtype, device) for step in steps]

    def masks(self, start: int, stop: int) -> Tensor:
        """Masks ``start:stop`` as ``(stop − start, H, W)``."""
        (h, w), (up_h, up_w) = self.size, self.upsampling
        span_h = torch.arange(h, device=up_h.device)
        span_w = torch.arange(w, device=up_w.device)
        rows = up_h[self.shifts[0][start:stop, None] + span_h]  # (k, H, cell)
        cols = up_w[self.shifts[1][start:stop, None] + span_w]  # (k, W, cell)
        return rows @ self.grids[start:stop] @ cols.transpose(1, 2)


@register
@dataclass(frozen=True, kw_only=True)
class Rise(Method):
    """RISE: the target score on randomly masked copies of the image, averaged with the
    masks as weights.

    Petsiuk, Das & Saenko (2018), "RISE: Randomized Input Sampling for Explanation of
    Black-box Models". With masks ``M_1 … M_N`` kept with probability ``p``, the
    saliency is ``S = Σ_m f(x ⊙ M_m + (1 − M_m) ⊙ x') · M_m / (N · p)`` — the paper's
    Monte-Carlo estimate of ``E[f(masked) · M] / p`` (its reference code divides by
    ``N · p`` too). Every channel of a pixel gets the same value.

    ``f`` is the target's logit by default; the paper (and its reference code) uses
    the class probability, ``score="probability"``. Deviation from the paper: we
    default to the logit, as every other method here does (occlusion, gradients, the
    CAMs), so that maps of different methods explain the same number, and because a
    confident prediction's probability saturates near 1, flattening the differences
    between masks that the map is made of. ``scores`` in the result is the clean
    logit either way.

    The same masks, drawn from ``seed`` (see :class:`RiseMasks`), are used for every
    image of the batch — unlike other random methods, row ``i`` does not use
    ``seed + i``: one call explains all images with one mask set.

    Parameters
    ----------
    masks : int
        Number of masks ``N`` (default 2000; one forward pass per mask and image).
    cell : int
        Size of the low-resolution random grid (default 7, i.e. 7 × 7 cells).
    probability : float
        Probability ``p`` that a cell is kept (default 0.5).
    baseline : str, float or Tensor
        What shows through where a mask is 0: ``"zeros"`` (default, the paper),
        ``"blur"``, ``"mean"``, a constant or a tensor (see
        :func:`~seethrough.core.baselines.make_baseline`).
    blur_sigma : float
        Standard deviation in pixels of the ``"blur"`` baseline (default 10).
    score : str
        What is averaged: ``"logit"`` (default) or ``"probability"`` (softmax over
        the classes, the paper's; needs class targets, not a callable).

    Raises
    ------
    TargetError
        ``score="probability"`` with a callable target.
    """

    masks: int = option(2000, check=integer(at_least=1))
    cell: int = option(7, check=integer(at_least=1))
    probability: float = option(0.5, check=number(above=0, at_most=1))
    baseline: BaselineLike = option("zeros", check=BASELINE)
    blur_sigma: float = option(10.0, check=number(above=0))
    score: str = option("logit", check=one_of(*SCORES))

    name = "rise"
    shares_seed_across_rows: ClassVar[bool] = True

    def planned_rows(self, n: int) -> int:
        return n * (self.masks + 1)

    def mask_set(self, ctx: PassContext, x: Tensor) -> RiseMasks:
        """The masks of this call (the same for every image)."""
        size = (x.shape[2], x.shape[3])
        return RiseMasks(self.masks, self.cell, self.probability, size, ctx.seed, x.dtype, x.device)

    def attribute_rows(self, ctx: PassContext, x: Tensor, target: Target) -> Attribution:
        if self.score == "probability":
            needs_classes(self.name, "score='probability'", target)
        target, scores, predicted = ctx.resolve(x, target)
        base = make_baseline(self.baseline, x, kinds=BASELINES, blur_sigma=self.blur_sigma)
        made = self.mask_set(ctx, x)
        n = len(x)
        saliency = x.new_zeros(n, x.shape[2] * x.shape[3])

        def masked(start: int, stop: int) -> Tensor:
            # rows are mask-major (row r: mask r // n on image r % n): a chunk needs few masks
            first = start // n
            m = made.masks(first, (stop - 1) // n + 1)[:, None]
            r = torch.arange(start, stop, device=x.device)
            m = m[r // n - first]
            image = r % n
            return x[image] * m + (1 - m) * base[image]

        def weigh(start: int, stop: int) -> None:
            # S (images × masks of the chunk) @ masks: a deterministic sum on every device
            first = start // n
            m = made.masks(first, (stop - 1) // n + 1).flatten(1)
            r = torch.arange(start, stop, device=x.device)
            weights = x.new_zeros(n, len(m))
            weights[r % n, r // n - first] = chunk_scores[start:stop]
            saliency.add_(weights @ m)

        rows_target = (
            target if target.indices is None else target.fixed(target.indices.repeat(self.masks))
        )
        if self.score == "probability":
            assert rows_target.indices is not None
            chunk_scores = forward_probabilities(
                ctx.model, masked, n * self.masks, rows_target.indices, ctx.budget
            )
        else:
            chunk_scores, _ = forward_scores(
                ctx.model, masked, n * self.masks, rows_target, ctx.budget
            )
        for start in range(0, n * self.masks, n * 64):
            weigh(start, min(n * self.masks, start + n * 64))
        values = saliency.view(n, 1, *x.shape[2:]) / (self.masks * self.probability)
        indices = target.indices_or_unknown(n, x.device)
        return Attribution(values.expand_as(x).contiguous(), scores, indices, predicted)

"""Baseline images: what an input becomes when its information is taken away.

Integrated gradients integrates from a baseline to the input (Sundararajan et al., 2017);
occlusion, RISE, LIME and KernelSHAP replace the removed pixels by one (Zeiler & Fergus,
2014; Petsiuk et al., 2018; Ribeiro et al., 2016; Lundberg & Lee, 2017); deletion,
insertion and AOPC fill removed pixels with one (Samek et al., 2017). Sturmfels, Lundberg
& Lee ("Visualizing the Impact of Feature Attribution Baselines", Distill 2020) compare the
kinds offered here. Each caller accepts the subset of :data:`BASELINE_KINDS` it names.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import InvalidOptionError

__all__ = [
    "BASELINE_KINDS",
    "BaselineLike",
    "RowGenerators",
    "check_baseline",
    "gaussian_blur",
    "make_baseline",
]

BASELINE_KINDS = ("zeros", "blur", "mean", "uniform")
"""Every named baseline: all zeros; the input blurred; each image's per-channel mean;
uniform noise between each image's minimum and maximum."""

BaselineLike = str | float | Tensor
"""A baseline kind's name, a constant, or a tensor broadcastable to the inputs."""

RowGenerators = torch.Generator | Callable[[int], torch.Generator]
"""One generator for the whole batch, or a function giving row ``i``'s own generator."""


def gaussian_blur(x: Tensor, sigma: float, *, radius: int | None = None) -> Tensor:
    """Blur each channel of ``x`` ``(N, C, H, W)`` with a Gaussian of ``sigma`` pixels.

    Separable (along H, then along W) with reflect padding. The kernel reaches ``radius``
    pixels each side (default ``⌈3σ⌉``), at most ``min(H, W) − 1`` so that reflecting
    stays inside the image; the truncated kernel is renormalised to sum to 1.
    """
    reach = math.ceil(3 * sigma) if radius is None else radius
    reach = max(0, min(reach, min(x.shape[2:]) - 1))
    offsets = torch.arange(-reach, reach + 1, dtype=x.dtype, device=x.device)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = kernel / kernel.sum()
    channels = x.shape[1]
    rows = kernel.view(1, 1, -1, 1).repeat(channels, 1, 1, 1)
    cols = kernel.view(1, 1, 1, -1).repeat(channels, 1, 1, 1)
    y = F.conv2d(F.pad(x, (0, 0, reach, reach), mode="reflect"), rows, groups=channels)
    return F.conv2d(F.pad(y, (reach, reach, 0, 0), mode="reflect"), cols, groups=channels)


def check_baseline(
    baseline: Any,
    kinds: Sequence[str] = BASELINE_KINDS,
    *,
    blur_sigma: float = 10.0,
    name: str = "baseline",
) -> None:
    """Refuse a baseline that is not one of ``kinds``, a number or a tensor, and a
    ``blur_sigma`` that is not a positive number.

    Raises
    ------
    InvalidOptionError
        Naming the option (``name``) and the valid values.
    """
    if isinstance(baseline, str):
        if baseline not in kinds:
            raise InvalidOptionError(
                f"unknown {name} {baseline!r} (valid: {', '.join(kinds)}, a number or a tensor)"
            )
    elif isinstance(baseline, bool) or not isinstance(baseline, (int, float, Tensor)):
        raise InvalidOptionError(
            f"{name} must be one of {', '.join(kinds)}, a number or a tensor; got {baseline!r}"
        )
    if isinstance(blur_sigma, bool) or not isinstance(blur_sigma, (int, float)):
        raise InvalidOptionError(f"blur_sigma must be a positive number, got {blur_sigma!r}")
    if not blur_sigma > 0:
        raise InvalidOptionError(f"blur_sigma must be positive, got {blur_sigma!r}")


def make_baseline(
    baseline: BaselineLike,
    x: Tensor,
    *,
    kinds: Sequence[str] = BASELINE_KINDS,
    blur_sigma: float = 10.0,
    blur_radius: int | None = None,
    generator: RowGenerators | None = None,
) -> Tensor:
    """The baseline of every row of ``x`` ``(N, C, H, W)``, a new tensor shaped like ``x``.

    Parameters
    ----------
    baseline : str, float or Tensor
        ``"zeros"``; ``"blur"`` (``x`` blurred by :func:`gaussian_blur` with
        ``blur_sigma`` and ``blur_radius``); ``"mean"`` (each image's per-channel mean);
        ``"uniform"`` (every pixel uniform in ``[min, max]`` of its image); a constant; or a
        tensor broadcastable to ``x``.
    x : Tensor
        The inputs ``(N, C, H, W)``.
    kinds : sequence of str
        The names the caller accepts (the error lists them).
    blur_sigma, blur_radius : float, int or None
        The ``"blur"`` baseline's Gaussian (see :func:`gaussian_blur`).
    generator : torch.Generator or callable, optional
        For ``"uniform"`` (required there): one generator, from which the whole batch is
        drawn at once, or a function ``row -> Generator`` giving each row its own stream,
        so that a row's baseline does not depend on the batch it is in.

    Raises
    ------
    InvalidOptionError
        An unknown kind, a wrong type, a tensor that does not broadcast, or ``"uniform"``
        without a generator.
    """
    check_baseline(baseline, kinds, blur_sigma=blur_sigma)
    if isinstance(baseline, Tensor):
        base = baseline.detach().to(x.device, x.dtype)
        try:
            return torch.broadcast_to(base, x.shape).clone()
        except RuntimeError:
            raise InvalidOptionError(
                f"baseline of shape {tuple(base.shape)} does not broadcast to the "
                f"inputs' shape {tuple(x.shape)}; give one image {tuple(x.shape[1:])}, "
                f"one per row {tuple(x.shape)}, or a number"
            ) from None
    if not isinstance(baseline, str):
        return torch.full_like(x, float(baseline))
    if baseline == "zeros":
        return torch.zeros_like(x)
    if baseline == "blur":
        return gaussian_blur(x, blur_sigma, radius=blur_radius)
    if baseline == "mean":
        return x.mean(dim=(2, 3), keepdim=True).expand_as(x).clone()
    if generator is None:
        raise InvalidOptionError("the uniform baseline draws random numbers: pass a generator")
    return _uniform(x, generator)


def _uniform(x: Tensor, generator: RowGenerators) -> Tensor:
    """Uniform noise in each image's ``[min, max]``: drawn at once from one generator, or
    row by row from each row's own."""
    if isinstance(generator, torch.Generator):
        n = len(x)
        low = x.flatten(1).amin(dim=1).reshape(n, 1, 1, 1)
        high = x.flatten(1).amax(dim=1).reshape(n, 1, 1, 1)
        draws = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        return low + (high - low) * draws
    noise = torch.empty_like(x)
    for i in range(len(x)):
        noise[i].uniform_(float(x[i].min()), float(x[i].max()), generator=generator(i))
    return noise

"""Random transformations applied to an image before each optimisation step.

Transformation robustness (Olah et al. 2017, "Feature Visualization"; Mordvintsev et al.
2015) keeps optimised images from exploiting pixel-exact, high-frequency patterns: each step
the model sees the image padded, shifted, scaled and rotated by small random amounts.

How randomness is drawn — so that a batch of K images equals K separate runs:
each row owns a ``torch.Generator`` (seeded with the row's seed); before the first step it
draws one table of uniforms ``(steps, draws_per_step)`` from it. Step ``t`` of row ``i``
reads row ``i``'s table only, so no draw depends on the batch size, the device or the other
rows. Consecutive :class:`Jitter`, :class:`Scale` and :class:`Rotate` transforms are fused
into one affine warp per row (one bilinear resampling instead of several, so fewer
interpolation blurs than Lucent's chain), applied to the whole batch with one
``grid_sample``. The canvas keeps its size; points from outside the canvas are 0 (black),
as in Lucent's kornia warps.

:data:`STANDARD` is Lucent's ``standard_transforms``: pad 12 (grey), jitter 8,
scale 0.9–1.1, rotate −10°…10° (0° five times as likely as each other angle), jitter 4.
Lucent's scaling resizes the canvas; here it scales about the centre on a fixed canvas.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import InvalidOptionError

__all__ = [
    "STANDARD",
    "Jitter",
    "Pad",
    "Pipeline",
    "Rotate",
    "Scale",
    "Transform",
    "make_pipeline",
]


class Transform(abc.ABC):  # noqa: B024 - a marker base: Pad and AffineTransform
    """One transformation; random ones consume ``draws`` uniforms per step and row."""

    draws: ClassVar[int] = 0


class AffineTransform(Transform):
    """A random similarity transform about the canvas centre."""

    @abc.abstractmethod
    def matrices(self, uniforms: Tensor) -> Tensor:
        """Forward maps ``(B, 3, 3)`` in centred pixel coordinates ``(x, y, 1)`` from
        ``uniforms`` ``(B, draws)`` in [0, 1)."""


def _choice(options: Tensor, uniforms: Tensor) -> Tensor:
    index = (uniforms * len(options)).long().clamp(max=len(options) - 1)
    return options[index]


@dataclass(frozen=True)
class Pad(Transform):
    """Pad every side by ``width`` pixels of constant ``value`` (in [0, 1] pixel units)."""

    width: int
    value: float = 0.5

    def __post_init__(self) -> None:
        if isinstance(self.width, bool) or not isinstance(self.width, int) or self.width < 0:
            raise InvalidOptionError(
                f"pad width must be a non-negative integer, got {self.width!r}"
            )

    def __call__(self, images: Tensor) -> Tensor:
        return F.pad(images, [self.width] * 4, mode="constant", value=self.value)


@dataclass(frozen=True)
class Jitter(AffineTransform):
    """Shift by whole pixels, each axis uniformly among ``pixels`` offsets centred on 0
    (``-pixels // 2 … pixels - pixels // 2 - 1``; Lucent draws ``0 … pixels - 1``)."""

    pixels: int
    draws: ClassVar[int] = 2

    def __post_init__(self) -> None:
        if isinstance(self.pixels, bool) or not isinstance(self.pixels, int) or self.pixels < 1:
            raise InvalidOptionError(f"jitter must be a positive integer, got {self.pixels!r}")

    def matrices(self, uniforms: Tensor) -> Tensor:
        offsets = torch.arange(self.pixels, dtype=uniforms.dtype) - self.pixels // 2
        shift = _choice(offsets, uniforms)
        matrix = torch.eye(3, dtype=uniforms.dtype).repeat(len(uniforms), 1, 1)
        matrix[:, 0, 2] = shift[:, 0]
        matrix[:, 1, 2] = shift[:, 1]
        return matrix


@dataclass(frozen=True)
class Scale(AffineTransform):
    """Scale about the centre by a factor drawn uniformly from ``factors``."""

    factors: tuple[float, ...]
    draws: ClassVar[int] = 1

    def __post_init__(self) -> None:
        factors = tuple(float(f) for f in self.factors)
        if not factors or not all(math.isfinite(f) and f > 0 for f in factors):
            raise InvalidOptionError(f"scale factors must be positive numbers, got {factors}")
        object.__setattr__(self, "factors", factors)

    def matrices(self, uniforms: Tensor) -> Tensor:
        factor = _choice(torch.tensor(self.factors, dtype=uniforms.dtype), uniforms[:, 0])
        matrix = torch.eye(3, dtype=uniforms.dtype).repeat(len(uniforms), 1, 1)
        matrix[:, 0, 0] = factor
        matrix[:, 1, 1] = factor
        return matrix


@dataclass(frozen=True)
class Rotate(AffineTransform):
    """Rotate about the centre by an angle (degrees) drawn uniformly from ``degrees``."""

    degrees: tuple[float, ...]
    draws: ClassVar[int] = 1

    def __post_init__(self) -> None:
        degrees = tuple(float(d) for d in self.degrees)
        if not degrees or not all(math.isfinite(d) for d in degrees):
            raise InvalidOptionError(f"rotation angles must be finite numbers, got {degrees}")
        object.__setattr__(self, "degrees", degrees)

    def matrices(self, uniforms: Tensor) -> Tensor:
        angle = _choice(torch.tensor(self.degrees, dtype=uniforms.dtype), uniforms[:, 0])
        radians = angle * (math.pi / 180.0)
        cos, sin = torch.cos(radians), torch.sin(radians)
        matrix = torch.eye(3, dtype=uniforms.dtype).repeat(len(uniforms), 1, 1)
        matrix[:, 0, 0], matrix[:, 0, 1] = cos, -sin
        matrix[:, 1, 0], matrix[:, 1, 1] = sin, cos
        return matrix


STANDARD: tuple[Transform, ...] = (
    Pad(12, 0.5),
    Jitter(8),
    Scale(tuple(1 + (i - 5) / 50.0 for i in range(11))),
    Rotate(tuple(float(d) for d in range(-10, 11)) + (0.0,) * 5),
    Jitter(4),
)
"""Lucent's ``standard_transforms`` (see the module docstring)."""


class Pipeline:
    """Transforms applied in order, runs of affine ones fused into one warp per row.

    Parameters
    ----------
    transforms : sequence of Transform
    """

    def __init__(self, transforms: Sequence[Transform]) -> None:
        for t in transforms:
            if not isinstance(t, Transform):
                raise InvalidOptionError(
                    f"{t!r} is not a transform; use Pad, Jitter, Scale or Rotate from "
                    "seethrough.inside.transforms"
                )
        self.transforms = tuple(transforms)
        self.draws = sum(t.draws for t in self.transforms)
        self._segments: list[Pad | list[AffineTransform]] = []
        for t in self.transforms:
            if isinstance(t, AffineTransform):
                last = self._segments[-1] if self._segments else None
                if isinstance(last, list):
                    last.append(t)
                else:
                    self._segments.append([t])
            elif isinstance(t, Pad):
                self._segments.append(t)

    def draw(self, generators: Sequence[torch.Generator], steps: int) -> Tensor:
        """Uniforms ``(B, steps, draws)``: row ``i``'s from ``generators[i]`` alone."""
        if self.draws == 0:
            return torch.zeros(len(generators), steps, 0, dtype=torch.float64)
        return torch.stack(
            [torch.rand((steps, self.draws), generator=g, dtype=torch.float64) for g in generators]
        )

    def output_size(self, size: tuple[int, int]) -> tuple[int, int]:
        pad = sum(t.width for t in self.transforms if isinstance(t, Pad))
        return size[0] + 2 * pad, size[1] + 2 * pad

    def frame(self, images: Tensor) -> Tensor:
        """The deterministic part only (padding): the framing every step sees, without the
        random shifts, scales and rotations."""
        for t in self.transforms:
            if isinstance(t, Pad):
                images = t(images)
        return images

    def __call__(self, images: Tensor, uniforms: Tensor) -> Tensor:
        """Transform ``images`` ``(B, C, H, W)`` with one step's ``uniforms`` ``(B, draws)``."""
        used = 0
        for segment in self._segments:
            if isinstance(segment, Pad):
                images = segment(images)
                continue
            forward = torch.eye(3, dtype=torch.float64).repeat(len(images), 1, 1)
            for t in segment:
                forward = t.matrices(uniforms[:, used : used + t.draws]) @ forward
                used += t.draws
            images = warp(images, forward)
        return images


def warp(images: Tensor, forward: Tensor) -> Tensor:
    """Resample ``images`` under per-row forward maps ``(B, 3, 3)`` in centred pixel
    coordinates (bilinear, zeros outside, canvas size kept)."""
    height, width = images.shape[-2:]
    # centred pixel → normalised coordinates of affine_grid (align_corners=False)
    to_norm = torch.diag(torch.tensor([2.0 / width, 2.0 / height, 1.0], dtype=torch.float64))
    theta = to_norm @ torch.linalg.inv(forward) @ torch.linalg.inv(to_norm)
    theta = theta[:, :2].to(dtype=images.dtype, device=images.device)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def make_pipeline(transforms: object) -> Pipeline:
    """``"standard"`` (:data:`STANDARD`), ``None`` (no transforms) or a sequence of
    :class:`Transform`."""
    if transforms is None:
        return Pipeline(())
    if isinstance(transforms, str):
        if transforms != "standard":
            raise InvalidOptionError(
                f"unknown transforms {transforms!r} (valid: 'standard', None, or a list of "
                "Pad/Jitter/Scale/Rotate)"
            )
        return Pipeline(STANDARD)
    if isinstance(transforms, Pipeline):
        return transforms
    if isinstance(transforms, Transform):
        return Pipeline((transforms,))
    if isinstance(transforms, Sequence):
        return Pipeline(list(transforms))
    raise InvalidOptionError(
        f"cannot use {transforms!r} as transforms; pass 'standard', None or a list of transforms"
    )

"""Image parametrizations for feature visualization, and the model's input normalisation.

An optimised image is not stored as pixels but as a tensor the optimiser moves, from which
the image in [0, 1] is computed (Olah et al. 2017, "Feature Visualization", Distill,
section "Preconditioning and Parameterization"):

``"fourier"``
    Lucid/Lucent's ``fft_image``: a real 2-D spectrum per channel, scaled by ``1 / f``
    (frequencies below ``1 / max(H, W)`` clipped), inverse real FFT with ``norm="ortho"``,
    divided by Lucid's constant 4; then colours decorrelated with the ImageNet colour
    correlation matrix (Lucid's ``color_correlation_svd_sqrt``, columns scaled to unit
    maximum norm) and squashed to [0, 1] by a sigmoid (``to_valid_rgb``). Gradient steps in
    this space are whitened: every frequency and colour direction moves at a similar rate.
``"pixel"``
    One value per pixel and channel (Lucent's ``pixel_image``), colour-decorrelated and
    sigmoid-squashed the same way.

Initialisation: row ``i`` draws ``N(0, sd²)`` values from its own ``torch.Generator``
(seeded with the row's seed, on the CPU, in float32), so a batch of K images equals K
separate runs, and the start does not depend on the device or dtype.
"""

from __future__ import annotations

import abc
import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..errors import InvalidOptionError

__all__ = [
    "COLOR_CORRELATION_SVD_SQRT",
    "PARAMETRIZATIONS",
    "FourierImage",
    "ImageParam",
    "Normalization",
    "PixelImage",
    "decorrelate_colors",
    "make_param",
    "resolve_normalization",
    "rfft2d_freqs",
    "spectrum_scale",
]

PARAMETRIZATIONS = ("fourier", "pixel")

COLOR_CORRELATION_SVD_SQRT: tuple[tuple[float, float, float], ...] = (
    (0.26, 0.09, 0.02),
    (0.27, 0.00, -0.05),
    (0.27, -0.09, 0.03),
)
"""Square root of ImageNet's colour covariance (Lucid's ``color_correlation_svd_sqrt``)."""

FOURIER_DIVISOR = 4.0
"""Lucid's "magic" constant dividing the inverse FFT (less saturated starts)."""


def _color_matrix(dtype: torch.dtype, device: torch.device) -> Tensor:
    matrix = torch.tensor(COLOR_CORRELATION_SVD_SQRT, dtype=torch.float32)
    matrix = matrix / matrix.norm(dim=0).max()
    return matrix.to(dtype=dtype, device=device)


def decorrelate_colors(images: Tensor) -> Tensor:
    """Map decorrelated colour coordinates to RGB: ``x @ M.T`` per pixel, ``(B, 3, H, W)``,
    with ``M`` the normalised square-root colour correlation (Lucid's
    ``_linear_decorrelate_color``)."""
    matrix = _color_matrix(images.dtype, images.device)
    return torch.einsum("bchw,dc->bdhw", images, matrix)


def rfft2d_freqs(height: int, width: int) -> Tensor:
    """Spatial frequency magnitude ``(H, W // 2 + 1)`` of each coefficient of a real 2-D FFT
    (Lucid's ``rfft2d_freqs``, float64)."""
    fy = torch.fft.fftfreq(height, dtype=torch.float64)[:, None]
    fx = torch.fft.fftfreq(width, dtype=torch.float64)[: width // 2 + 1][None, :]
    return torch.sqrt(fx * fx + fy * fy)


def spectrum_scale(height: int, width: int, decay_power: float = 1.0) -> Tensor:
    """``1 / max(f, 1 / max(H, W)) ** decay_power`` per coefficient, ``(H, W // 2 + 1)``."""
    freqs = rfft2d_freqs(height, width)
    return 1.0 / freqs.clamp(min=1.0 / max(height, width)) ** decay_power


class ImageParam(abc.ABC):
    """A batch of images computed from tensors that the optimiser moves.

    Attributes
    ----------
    tensors : list of Tensor
        The leaves (``requires_grad=True``) to optimise.
    """

    tensors: list[Tensor]

    @abc.abstractmethod
    def __call__(self) -> Tensor:
        """The images ``(B, C, H, W)`` with values in [0, 1]."""


def _colour_matrix_for(tensor: Tensor, decorrelate: bool) -> Tensor | None:
    if not decorrelate or tensor.shape[1] != 3:
        return None
    return _color_matrix(tensor.dtype, tensor.device)


def _to_rgb(raw: Tensor, matrix: Tensor | None) -> Tensor:
    if matrix is not None:
        raw = torch.einsum("bchw,dc->bdhw", raw, matrix)
    # einsum leaves channels-last strides; a fixed layout keeps kernels (and rounding) the
    # same whatever the batch size
    return torch.sigmoid(raw).contiguous()


class FourierImage(ImageParam):
    """Lucid's Fourier-space image, see the module docstring.

    Parameters
    ----------
    spectrum : Tensor
        ``(B, C, H, W // 2 + 1, 2)`` real and imaginary parts (becomes the leaf).
    height, width : int
        Image size.
    decorrelate : bool
        Apply :func:`decorrelate_colors` (3-channel images only).
    decay_power : float
        Exponent of the ``1 / f`` spectrum scaling.
    """

    def __init__(
        self,
        spectrum: Tensor,
        height: int,
        width: int,
        *,
        decorrelate: bool = True,
        decay_power: float = 1.0,
    ) -> None:
        expected = (height, width // 2 + 1, 2)
        if spectrum.dim() != 5 or tuple(spectrum.shape[2:]) != expected:
            raise InvalidOptionError(
                f"a {height}×{width} Fourier image needs a spectrum (B, C, {expected[0]}, "
                f"{expected[1]}, 2), got {tuple(spectrum.shape)}"
            )
        self.spectrum = spectrum.detach().clone().requires_grad_(True)
        self.tensors = [self.spectrum]
        self.size = (height, width)
        self.colours = _colour_matrix_for(spectrum, decorrelate)
        scale = spectrum_scale(height, width, decay_power)
        self.scale = scale.to(dtype=spectrum.dtype, device=spectrum.device)[..., None]

    def raw(self) -> Tensor:
        """The image before colour decorrelation and sigmoid, ``(B, C, H, W)``."""
        coefficients = torch.view_as_complex((self.scale * self.spectrum).contiguous())
        image = torch.fft.irfftn(coefficients, s=self.size, dim=(-2, -1), norm="ortho")
        return image / FOURIER_DIVISOR

    def __call__(self) -> Tensor:
        return _to_rgb(self.raw(), self.colours)


class PixelImage(ImageParam):
    """One free value per pixel and channel, decorrelated and squashed like
    :class:`FourierImage`."""

    def __init__(self, pixels: Tensor, *, decorrelate: bool = True) -> None:
        self.pixels = pixels.detach().clone().requires_grad_(True)
        self.tensors = [self.pixels]
        self.colours = _colour_matrix_for(pixels, decorrelate)

    def __call__(self) -> Tensor:
        return _to_rgb(self.pixels, self.colours)


def make_param(
    kind: str,
    generators: Sequence[torch.Generator],
    *,
    channels: int,
    size: tuple[int, int],
    dtype: torch.dtype,
    device: torch.device,
    sd: float = 0.01,
    decorrelate: bool = True,
) -> ImageParam:
    """A parametrization of ``len(generators)`` images; row ``i`` is initialised from
    ``generators[i]`` (CPU generators; values drawn in float32, then cast and moved)."""
    if kind not in PARAMETRIZATIONS:
        raise InvalidOptionError(
            f"unknown parametrization {kind!r} (valid: {', '.join(PARAMETRIZATIONS)})"
        )
    if not (math.isfinite(sd) and sd > 0):
        raise InvalidOptionError(f"sd must be a positive number, got {sd!r}")
    height, width = size
    shape = (channels, height, width // 2 + 1, 2) if kind == "fourier" else (channels, *size)
    rows = [torch.randn(shape, generator=g, dtype=torch.float32) * sd for g in generators]
    initial = torch.stack(rows).to(dtype=dtype, device=device)
    if kind == "fourier":
        return FourierImage(initial, height, width, decorrelate=decorrelate)
    return PixelImage(initial, decorrelate=decorrelate)


# --------------------------------------------------------------------------- normalisation


@dataclass(frozen=True)
class Normalization:
    """The model's input normalisation ``(x − mean) / std`` of pixels in [0, 1].

    ``mean is None`` means unknown: the model input is the image itself (identity), and
    pixel values are not clamped to [0, 1] by the methods that edit images.
    A ``function`` replaces the affine map (for :func:`~seethrough.inside.maximize` only;
    it has no inverse).
    """

    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    function: Callable[[Tensor], Tensor] | None = None

    @property
    def known(self) -> bool:
        """Whether pixel values in [0, 1] map to model inputs by a known affine map."""
        return self.mean is not None

    def __call__(self, pixels: Tensor) -> Tensor:
        if self.function is not None:
            return self.function(pixels)
        if self.mean is None or self.std is None:
            return pixels
        mean, std = self._stats(pixels)
        return (pixels - mean) / std

    def invert(self, inputs: Tensor) -> Tensor:
        """Model inputs → pixels (not clamped)."""
        if self.function is not None:
            raise InvalidOptionError(
                "a normalize function cannot be inverted; pass normalize=(mean, std) instead"
            )
        if self.mean is None or self.std is None:
            return inputs
        mean, std = self._stats(inputs)
        return inputs * std + mean

    def check_channels(self, channels: int) -> None:
        if self.mean is not None and len(self.mean) not in (1, channels):
            raise InvalidOptionError(
                f"normalize has {len(self.mean)} means for {channels}-channel images"
            )

    def describe(self) -> str:
        if self.function is not None:
            return getattr(self.function, "__name__", "function")
        if self.mean is None or self.std is None:
            return "none"
        mean = ", ".join(f"{m:.4g}" for m in self.mean)
        std = ", ".join(f"{s:.4g}" for s in self.std)
        return f"(x - [{mean}]) / [{std}]"

    def _stats(self, x: Tensor) -> tuple[Tensor, Tensor]:
        assert self.mean is not None and self.std is not None
        mean, std = _stats_on(self.mean, self.std, x.dtype, x.device)
        shape = (-1, 1, 1) if x.dim() >= 3 else (-1,)
        return mean.reshape(shape), std.reshape(shape)


@functools.lru_cache(maxsize=32)
def _stats_on(
    mean: tuple[float, ...], std: tuple[float, ...], dtype: torch.dtype, device: torch.device
) -> tuple[Tensor, Tensor]:
    """The statistics as tensors, made once per dtype and device (no copy to the device at
    every step)."""
    with torch.inference_mode(False):  # cached: must not be an inference tensor
        return (
            torch.tensor(mean, dtype=dtype, device=device),
            torch.tensor(std, dtype=dtype, device=device),
        )


def resolve_normalization(normalize: Any, preprocess: Any) -> Normalization:
    """The :class:`Normalization` for a call.

    ``normalize`` may be ``None`` (the ``LoadedModel``'s own preprocessing when there is one,
    else none), ``False`` (none), a ``(mean, std)`` pair of numbers or sequences, an object
    with ``.mean`` and ``.std`` (e.g. a :class:`~seethrough.models.Preprocess`), a
    :class:`Normalization`, or a callable from pixels in [0, 1] to model inputs.
    """
    if isinstance(normalize, Normalization):
        return normalize
    if normalize is None:
        return _from_stats(preprocess) if preprocess is not None else Normalization()
    if normalize is False:
        return Normalization()
    if hasattr(normalize, "mean") and hasattr(normalize, "std"):
        return _from_stats(normalize)
    if isinstance(normalize, (tuple, list)) and len(normalize) == 2:
        return _pair(normalize[0], normalize[1])
    if callable(normalize):
        return Normalization(function=normalize)
    raise InvalidOptionError(
        f"cannot use {normalize!r} as normalize; pass (mean, std), a Preprocess, a callable, "
        "False or None"
    )


def _from_stats(source: Any) -> Normalization:
    return _pair(source.mean, source.std)


def _pair(mean: Any, std: Any) -> Normalization:
    means = _floats(mean, "mean")
    stds = _floats(std, "std")
    if len(means) != len(stds) or any(s <= 0 for s in stds):
        raise InvalidOptionError(
            f"normalize needs as many means as positive stds, got mean={means}, std={stds}"
        )
    return Normalization(means, stds)


def _floats(value: Any, what: str) -> tuple[float, ...]:
    values = value.tolist() if isinstance(value, Tensor) else value
    values = [values] if isinstance(values, (int, float)) else list(values)
    if not values or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
        raise InvalidOptionError(f"normalize {what} must be finite numbers, got {value!r}")
    return tuple(float(v) for v in values)

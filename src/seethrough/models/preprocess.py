"""Turn images into the normalised tensor a classifier expects, and back.

A :class:`Preprocess` is a frozen description of one model's input pipeline: centre-crop a square,
resize it, normalise. Resizing runs in torch on float data (so 16-bit images keep their
precision) with antialiasing, like ``torchvision.transforms.v2.Resize(antialias=True)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from seethrough.errors import InvalidInputError, InvalidOptionError

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "INTERPOLATIONS", "Preprocess"]

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
"""torchvision's ImageNet per-channel mean (RGB) of pixel values in [0, 1]."""
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
"""torchvision's ImageNet per-channel standard deviation (RGB)."""
INTERPOLATIONS: tuple[str, ...] = ("bicubic", "bilinear")
# ITU-R BT.601 luma weights, as PIL's convert("L") uses.
_LUMA = (0.299, 0.587, 0.114)
_EXPECTED = "(H, W, 3) RGB or (H, W) grayscale"
# Colour conversions can overshoot [0, 1] by rounding; 0-255 floats are what this catches.
_RANGE_SLACK = 1e-3


@dataclass(frozen=True)
class Preprocess:
    """Centre-crop, resize and normalise images for a classifier.

    The defaults are the PyTorch ImageNet convention (torchvision's mean/std, 224 px crop from
    the central 87.5 %), used for models whose own preprocessing is unknown.

    Parameters
    ----------
    size : int
        Output side in pixels; outputs are ``size × size``.
    crop_fraction : float
        Side of the central square crop as a fraction of the short image side, in (0, 1].
        0.875 at 224 px equals torchvision's "resize to 256, centre-crop 224" up to rounding.
    mean, std : tuple of float
        Per channel, applied to pixel values in [0, 1]: ``(x - mean) / std``.
    interpolation : {"bicubic", "bilinear"}
        Resampling filter (antialiased when shrinking).
    channels : {3, 1}
        3 for RGB models; 1 for grayscale models (RGB input becomes ITU-R 601 luma).
    """

    size: int = 224
    crop_fraction: float = 0.875
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    interpolation: str = "bicubic"
    channels: int = 3

    def __post_init__(self) -> None:
        object.__setattr__(self, "mean", tuple(float(m) for m in self.mean))
        object.__setattr__(self, "std", tuple(float(s) for s in self.std))
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 1:
            raise InvalidOptionError(f"size must be a positive integer, got {self.size!r}")
        if not 0.0 < self.crop_fraction <= 1.0:
            raise InvalidOptionError(f"crop_fraction must be in (0, 1], got {self.crop_fraction}")
        if self.interpolation not in INTERPOLATIONS:
            raise InvalidOptionError(
                f"unknown interpolation {self.interpolation!r}; valid: {', '.join(INTERPOLATIONS)}"
            )
        if self.channels not in (1, 3):
            raise InvalidOptionError(f"channels must be 1 or 3, got {self.channels!r}")
        for field in ("mean", "std"):
            values = getattr(self, field)
            if len(values) != self.channels or not all(math.isfinite(v) for v in values):
                raise InvalidOptionError(
                    f"{field} needs {self.channels} finite values (one per channel), got {values}"
                )
        if any(s <= 0 for s in self.std):
            raise InvalidOptionError(f"std values must be positive, got {self.std}")

    def __call__(self, images: Any, *, device: str | torch.device | None = None) -> torch.Tensor:
        """Preprocess one image or a sequence of images.

        Parameters
        ----------
        images
            One image or a sequence. An image is an object with a ``.pixels`` array (float32
            (H, W, 3) in [0, 1], as ``seethrough.data.LoadedImage``), a numpy array (H, W, 3)
            or (H, W) — uint8/uint16, or float in [0, 1] — or a PIL image.
        device : str or torch.device, optional
            Where the result (and the resizing) lives; CPU by default.

        Returns
        -------
        torch.Tensor
            (N, channels, size, size) float32.

        Raises
        ------
        InvalidOptionError
            If an image has an unsupported shape or type.
        """
        if _is_single_image(images):
            batch = [images]
        elif isinstance(images, Sequence) and not isinstance(images, (str, bytes)):
            batch = list(images)
        else:
            raise InvalidOptionError(
                f"cannot preprocess a {type(images).__name__}; expected a numpy array "
                f"{_EXPECTED}, a PIL image, an object with .pixels, or a sequence of these"
            )
        if not batch:
            raise InvalidOptionError("no images given; expected one image or a sequence of them")
        return torch.cat([self._one(_to_array(image), device) for image in batch])

    def invert(self, x: torch.Tensor) -> torch.Tensor:
        """Undo the normalisation: (N, C, H, W) model input → display pixels in [0, 1]."""
        if x.ndim != 4 or x.shape[1] != self.channels:
            raise InvalidInputError(
                f"expected a (N, {self.channels}, H, W) tensor, got shape {tuple(x.shape)}"
            )
        mean, std = self._stats(x)
        return (x * std + mean).clamp(0.0, 1.0)

    def describe(self) -> str:
        """One line: crop, resize, colour and normalisation."""
        colour = "RGB" if self.channels == 3 else "grayscale (ITU-R 601 luma)"
        mean = ", ".join(f"{m:.4g}" for m in self.mean)
        std = ", ".join(f"{s:.4g}" for s in self.std)
        return (
            f"centre crop {self.crop_fraction:.4g} of the short side, {self.interpolation} resize "
            f"to {self.size}×{self.size}, {colour}, (x - [{mean}]) / [{std}] with x in [0, 1]"
        )

    def _one(self, pixels: np.ndarray, device: str | torch.device | None) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(pixels, dtype=np.float32)).to(device)
        x = x.unsqueeze(-1) if x.ndim == 2 else x
        x = self._convert_channels(x.permute(2, 0, 1))
        x = self._crop(x).unsqueeze(0)
        if x.shape[-2:] != (self.size, self.size):
            x = F.interpolate(
                x,
                size=(self.size, self.size),
                mode=self.interpolation,
                align_corners=False,
                antialias=True,
            )
            # Bicubic overshoots; pixel values outside [0, 1] do not exist (PIL clamps too).
            x = x.clamp(0.0, 1.0)
        mean, std = self._stats(x)
        return (x - mean) / std

    def _convert_channels(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] == self.channels:
            return x
        if self.channels == 3:
            return x.expand(3, -1, -1)
        luma = torch.tensor(_LUMA, dtype=x.dtype, device=x.device)
        return (x * luma[:, None, None]).sum(0, keepdim=True)

    def _crop(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        side = max(1, round(self.crop_fraction * min(height, width)))
        top, left = (height - side) // 2, (width - side) // 2
        return x[:, top : top + side, left : left + side]

    def _stats(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device)[:, None, None]
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device)[:, None, None]
        return mean, std


def _is_single_image(images: Any) -> bool:
    return hasattr(images, "pixels") or isinstance(images, np.ndarray) or _is_pil(images)


def _is_pil(image: Any) -> bool:
    return type(image).__module__.startswith("PIL.")


def _to_array(image: Any) -> np.ndarray:
    """Return float32 (H, W, 3) or (H, W) pixels in [0, 1]."""
    if hasattr(image, "pixels"):
        array = np.asarray(image.pixels)
    elif _is_pil(image):
        array = _pil_to_array(image)
    elif isinstance(image, np.ndarray):
        array = image
    else:
        raise InvalidOptionError(
            f"cannot preprocess a {type(image).__name__}; expected a numpy array {_EXPECTED}, "
            "a PIL image or an object with .pixels"
        )
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] == 3)) or 0 in array.shape:
        raise InvalidOptionError(f"expected an image of shape {_EXPECTED}, got {array.shape}")
    if array.dtype in (np.uint8, np.uint16):
        return array.astype(np.float32) / np.iinfo(array.dtype).max
    if array.dtype == np.bool_:
        return array.astype(np.float32)
    if np.issubdtype(array.dtype, np.floating):
        low, high = float(array.min()), float(array.max())
        if low < -_RANGE_SLACK or high > 1.0 + _RANGE_SLACK:
            raise InvalidOptionError(
                f"float pixels must be in [0, 1], got values in [{low:.4g}, {high:.4g}]; "
                "divide 8-bit values by 255"
            )
        return array.astype(np.float32)
    raise InvalidOptionError(f"unsupported pixel dtype {array.dtype}; expected uint8/16 or float")


def _pil_to_array(image: Any) -> np.ndarray:
    if image.mode in ("I;16", "I;16L", "I;16B"):
        return np.asarray(image).astype(np.float32) / 65535.0
    if image.mode == "F":
        return np.asarray(image, dtype=np.float32)
    if image.mode == "L":
        return np.asarray(image)
    return np.asarray(image.convert("RGB"))

"""Heatmaps and overlays. Normalisation for display lives here, never in the methods.

Signed maps (gradient × input, integrated gradients, Grad-CAM) are summed over
channels and drawn in a diverging colormap centred at zero; magnitude maps
(gradient, SmoothGrad, guided backprop) are summed as absolute values and drawn in a
sequential colormap. Each map is scaled by a high percentile of its own absolute
values for display, and the figure prints that scale, so two maps' colours are
comparable only through their printed scales.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib import colormaps
from torch import Tensor

from ..errors import InvalidOptionError

__all__ = [
    "DIVERGING",
    "SEQUENTIAL",
    "colorize",
    "display_images",
    "heat_values",
    "overlay",
    "scale_for_display",
]

DIVERGING = "RdBu_r"
SEQUENTIAL = "inferno"


def heat_values(attributions: Tensor, display: str, size: tuple[int, int] | None = None) -> Tensor:
    """Reduce ``(N, C, h, w)`` attributions to ``(N, H, W)`` values for a heatmap.

    ``display="signed"`` sums channels; ``"magnitude"`` sums absolute values.
    Layer-resolution maps are upsampled bilinearly to ``size`` when given.
    """
    if display not in ("signed", "magnitude"):
        raise InvalidOptionError(f"display must be 'signed' or 'magnitude', got {display!r}")
    values = attributions.detach().float()
    if values.dim() != 4:
        raise InvalidOptionError(f"attributions must be (N, C, H, W), got {tuple(values.shape)}")
    values = values.abs().sum(dim=1) if display == "magnitude" else values.sum(dim=1)
    if size is not None and tuple(values.shape[1:]) != tuple(size):
        values = F.interpolate(values[:, None], size=size, mode="bilinear", align_corners=False)[
            :, 0
        ]
    return values.cpu()


def scale_for_display(values: Tensor, percentile: float = 99.5) -> tuple[Tensor, Tensor]:
    """Divide each map by the ``percentile`` of its absolute values; clip to [-1, 1].

    Returns the scaled maps and the per-map scale. A map that is all zeros keeps scale 1.
    """
    if not 0 < percentile <= 100:
        raise InvalidOptionError(f"percentile must be in (0, 100], got {percentile}")
    flat = values.abs().flatten(1)
    scale = torch.quantile(flat, percentile / 100, dim=1)
    scale = torch.where(scale > 0, scale, flat.max(dim=1).values)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    return (values / scale[:, None, None]).clamp(-1, 1), scale


def colorize(scaled: np.ndarray, display: str) -> np.ndarray:
    """RGB ``(H, W, 3)`` floats for a map already scaled to [-1, 1] (or [0, 1])."""
    if display == "signed":
        return colormaps[DIVERGING]((scaled + 1) / 2)[..., :3]
    return colormaps[SEQUENTIAL](np.clip(scaled, 0, 1))[..., :3]


def overlay(image: np.ndarray, scaled: np.ndarray, display: str, alpha: float = 0.7) -> np.ndarray:
    """Blend a heatmap over an image; opacity grows with the map's magnitude."""
    weight = alpha * np.abs(scaled)[..., None]
    return (1 - weight) * image + weight * colorize(scaled, display)


def display_images(inputs: Tensor, transform: object | None = None) -> np.ndarray:
    """Inputs as displayable RGB ``(N, H, W, 3)`` in [0, 1].

    Uses ``transform.invert`` (a model's preprocessing) when given; otherwise each
    image is min-max scaled for display only. One channel is shown as grey.
    """
    x = inputs.detach().float()
    invert = getattr(transform, "invert", None)
    if invert is not None:
        x = invert(x)
    else:
        flat = x.flatten(1)
        lo = flat.min(dim=1).values.view(-1, 1, 1, 1)
        hi = flat.max(dim=1).values.view(-1, 1, 1, 1)
        x = (x - lo) / (hi - lo).clamp_min(1e-12)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    elif x.shape[1] != 3:
        x = x.mean(dim=1, keepdim=True).expand(-1, 3, -1, -1)
    return x.clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()

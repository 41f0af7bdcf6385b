"""CAMs from several layers, fused into one map at the input's resolution.

``explain(model, x, "grad_cam", layer=["blocks.3", "blocks.5", "head"])`` runs the
method once per layer (each its own pass, or the shared pass when there is one) and
fuses the maps with :func:`fuse_layers`. Maps from different layers have different
resolutions and scales, so fusing needs a stated rule; the rule and every layer's raw
result are kept in the :class:`MultiLayerCamExplanation`:

* ``layer_scale="max_abs"`` (default): each layer's map divided by its largest
  ``|value|`` per image — signs kept, each layer weighs the same;
* ``"minmax"``: pytorch-grad-cam's rule — ReLU, then min-max to [0, 1] per image at the
  layer's resolution; ``fusion="mean"`` then equals its multi-layer map before its
  final min-max;
* ``"none"``: the raw maps, upsampled (sensible when the layers' units agree).

Then ``layer_fusion="mean"`` (default, as pytorch-grad-cam) or ``"max"`` (element-wise,
as LayerCAM's paper fuses stages).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ...errors import InvalidOptionError, check_option, one_of
from ..explanation import Explanation, freeze_settings

__all__ = [
    "LAYER_FUSIONS",
    "LAYER_SCALES",
    "MultiLayerCamExplanation",
    "check_fusion_options",
    "fuse_layers",
]

LAYER_SCALES = ("max_abs", "minmax", "none")
LAYER_FUSIONS = ("mean", "max")
MINMAX_EPS = 1e-7  # pytorch-grad-cam's scale_cam_image


@dataclass(frozen=True, eq=False, kw_only=True)
class MultiLayerCamExplanation(Explanation):
    """A CAM fused over ``layers`` at the input's resolution.

    ``per_layer`` holds each layer's own explanation (raw map at its resolution,
    channel weights, channel scores); ``layer_scale`` and ``layer_fusion`` say how the
    maps were combined (see :mod:`seethrough.attribution.cams.multilayer`).
    """

    layers: tuple[str, ...]
    per_layer: tuple[Explanation, ...]
    layer_scale: str
    layer_fusion: str

    @property
    def layer(self) -> str:
        """The layers, comma-separated (for messages and reports)."""
        return ", ".join(self.layers)


def check_fusion_options(layer_scale: str, layer_fusion: str, owner: str = "fuse_layers") -> None:
    """Refuse an unknown ``layer_scale`` or ``layer_fusion`` (the message names ``owner``)."""
    check_option(owner, "layer_scale", layer_scale, one_of(*LAYER_SCALES))
    check_option(owner, "layer_fusion", layer_fusion, one_of(*LAYER_FUSIONS))


def _scaled(values: Tensor, how: str) -> Tensor:
    """One layer's map ``(N, 1, h, w)`` scaled per image, still at its resolution."""
    flat = values.flatten(1)
    if how == "none":
        return values
    if how == "max_abs":
        peak = flat.abs().amax(dim=1)
        peak = torch.where(peak > 0, peak, torch.ones_like(peak))
        return values / peak.reshape(-1, *([1] * (values.dim() - 1)))
    rect = F.relu(values)
    low = rect.flatten(1).amin(dim=1).reshape(-1, *([1] * (values.dim() - 1)))
    shifted = rect - low
    high = shifted.flatten(1).amax(dim=1).reshape(-1, *([1] * (values.dim() - 1)))
    return shifted / (MINMAX_EPS + high)


def fuse_layers(
    explanations: Sequence[Explanation],
    *,
    layer_scale: str = "max_abs",
    layer_fusion: str = "mean",
    interpolation: str = "bilinear",
) -> MultiLayerCamExplanation:
    """Fuse layer-resolution CAMs of the same inputs and targets into one map.

    Each map is scaled per image (``layer_scale``), upsampled to the input's size
    (``interpolation``, corners not aligned) and fused (``layer_fusion``).
    """
    check_fusion_options(layer_scale, layer_fusion)
    if not explanations:
        raise InvalidOptionError("fuse_layers needs at least one explanation")
    first = explanations[0]
    for ex in explanations:
        if ex.resolution != "layer" or not hasattr(ex, "layer"):
            raise InvalidOptionError(
                f"fuse_layers takes layer-resolution CAMs; {ex.method!r} is at "
                f"{ex.resolution} resolution"
            )
        if ex.method != first.method or not torch.equal(ex.targets, first.targets):
            raise InvalidOptionError(
                "fuse_layers needs explanations of one method and the same targets; "
                f"got {first.method!r} and {ex.method!r}"
            )
        if ex.inputs.shape != first.inputs.shape:
            raise InvalidOptionError("fuse_layers needs explanations of the same inputs")
    size = tuple(first.inputs.shape[2:])
    align = False if interpolation in ("bilinear", "bicubic") else None
    maps = [
        F.interpolate(
            _scaled(ex.attributions, layer_scale),
            size=size,
            mode=interpolation,
            align_corners=align,
        )
        for ex in explanations
    ]
    stacked = torch.stack(maps)
    fused = stacked.mean(dim=0) if layer_fusion == "mean" else stacked.amax(dim=0)
    fields = {f.name: getattr(first, f.name) for f in dataclasses.fields(Explanation)}
    fields.update(
        attributions=fused.contiguous(),
        resolution="input",
        seconds=sum(ex.seconds for ex in explanations),
        settings=freeze_settings(
            {
                **dict(first.settings),
                "layer": tuple(ex.layer for ex in explanations),  # type: ignore[attr-defined]
                "layer_scale": layer_scale,
                "layer_fusion": layer_fusion,
            }
        ),
    )
    return MultiLayerCamExplanation(
        **fields,
        layers=tuple(ex.layer for ex in explanations),  # type: ignore[attr-defined]
        per_layer=tuple(explanations),
        layer_scale=layer_scale,
        layer_fusion=layer_fusion,
    )

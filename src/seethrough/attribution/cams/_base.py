"""What every CAM shares: the ``layer`` and ``relu`` options, the layer's clean pass,
and the result (a map at the layer's resolution with its channel weights)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from ...core.layers import default_cam_layer, find_layer
from ...core.targets import Target
from ...errors import LayerError, boolean, instance_of, option, optional, text
from ..explanation import CamDetails, CamExplanation, Explanation
from ..method import Attribution, Method
from ..run import CleanPass, PassContext, PassNeeds

__all__ = ["LAYER", "check_spatial", "resolve_layer", "spatial", "weighted"]

LAYER = optional(text()) | instance_of((list, tuple), "a list of layer names")
"""One layer name, ``None`` (the last spatial layer) or a list of names to fuse."""


def resolve_layer(
    ctx: PassContext, x: Tensor, layer: str | Sequence[str] | None
) -> tuple[str, torch.nn.Module]:
    """The named layer, or the default CAM layer (the last spatial map) when ``None``."""
    assert layer is None or isinstance(layer, str), "explain splits a list of layers"
    name = layer if layer is not None else default_cam_layer(ctx.model, x)
    return name, find_layer(ctx.model, name)


def spatial(t: Tensor) -> tuple[int, ...]:
    """The spatial dimensions of ``(N, C, h, w)``: ``(2, 3)``."""
    return tuple(range(2, t.dim()))


def check_spatial(method: str, name: str, acts: Tensor) -> None:
    """Refuse a layer whose output has no spatial dimensions."""
    if acts.dim() < 3:
        raise LayerError(
            f"{method} needs a layer with a spatial output (N, C, h, w); layer {name!r} "
            f"outputs {tuple(acts.shape)} — choose an earlier layer"
        )


def weighted(acts: Tensor, weights: Tensor) -> Tensor:
    """``sum_k w_k · A_k`` as ``(N, 1, h, w)``."""
    shape = weights.shape + (1,) * (acts.dim() - 2)
    return (weights.reshape(shape) * acts).sum(dim=1, keepdim=True)


@dataclass(frozen=True, kw_only=True)
class _LayerCam(Method):
    """A CAM: the options every CAM has, the layer's clean pass and the result.

    Parameters
    ----------
    layer : str, list of str, or None
        Dotted module name; ``None`` picks the last layer with a spatial output. A list
        of names runs the CAM once per layer and fuses the maps
        (:mod:`seethrough.attribution.cams.multilayer`).
    relu : bool
        Rectify the map (default False).
    """

    layer: str | Sequence[str] | None = option(None, check=LAYER)
    relu: bool = option(False, check=boolean())

    resolution = "layer"
    result_type: ClassVar[type[Explanation]] = CamExplanation

    def _layer_pass(
        self, ctx: PassContext, x: Tensor, target: Target
    ) -> tuple[str, CleanPass, Tensor, Tensor]:
        """The layer's name, the clean pass, its activation and gradient."""
        name, module = resolve_layer(ctx, x, self.layer)
        clean = ctx.clean_pass(x, target, input_grad=False, layer=(name, module))
        assert clean.activation is not None and clean.layer_grad is not None
        check_spatial(self.name, name, clean.activation)
        return name, clean, clean.activation, clean.layer_grad

    def _layer_needs(self, ctx: PassContext, x: Tensor) -> PassNeeds:
        """The clean pass this CAM reads: the layer's activation and gradient."""
        return PassNeeds(input_grad=False, layer=resolve_layer(ctx, x, self.layer)[0])

    def _result(
        self,
        cam: Tensor,
        clean: CleanPass | Attribution,
        details: CamDetails,
    ) -> Attribution:
        """The (optionally rectified) map with the scores and classes of ``clean``."""
        values = F.relu(cam) if self.relu else cam
        return Attribution(values, clean.scores, clean.indices, clean.predicted, details)

"""Grad-CAM and Guided Grad-CAM (Selvaraju et al., 2017)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..core.layers import default_cam_layer, find_layer
from ..core.rules import Rectifiers, check_rectifiers
from ..core.targets import Target
from ..errors import InvalidOptionError, LayerError
from .base import Attribution, Method, Run, register
from .explanation import CamExplanation, GuidedGradCamExplanation
from .guided import rectified_gradients

__all__ = ["GradCam", "GuidedGradCam", "INTERPOLATIONS", "resolve_layer"]

INTERPOLATIONS = ("bilinear", "nearest", "bicubic")


def resolve_layer(run: Run, x: Tensor, layer: str | None) -> tuple[str, torch.nn.Module]:
    """The named layer, or the default CAM layer (the last spatial map) when ``None``."""
    name = layer if layer is not None else default_cam_layer(run.model, x)
    return name, find_layer(run.model, name)


@register
@dataclass(frozen=True, kw_only=True)
class GradCam(Method):
    """Grad-CAM: the layer's channels weighted by their spatially averaged gradients.

    ``sum_k mean_ij(d score / d A_kij) · A_k``, at the layer's resolution ``(N, 1, h, w)``
    — the backward pass stops at the layer. Raw by default (no ReLU, no min-max, like
    Captum's ``LayerGradCam``); ``relu=True`` gives the paper's rectified map. Upsample
    with :meth:`Explanation.to_input_size`.

    Parameters
    ----------
    layer : str or None
        Dotted module name; ``None`` picks the last layer with a spatial output.
    relu : bool
        Rectify the map (default False).
    """

    layer: str | None = None
    relu: bool = False

    name = "grad_cam"
    resolution = "layer"
    result_type = CamExplanation

    def clean_pass_needs(self, run: Run, x: Tensor) -> tuple[bool, str | None]:
        return False, resolve_layer(run, x, self.layer)[0]

    def attribute_rows(self, run: Run, x: Tensor, target: Target) -> Attribution:
        name, module = resolve_layer(run, x, self.layer)
        done = run.clean_pass(x, target, input_grad=False, layer=(name, module))
        acts, grads = done.activation, done.layer_grad
        assert acts is not None and grads is not None
        if acts.dim() < 3:
            raise LayerError(
                f"grad_cam needs a layer with a spatial output (N, C, h, w); layer {name!r} "
                f"outputs {tuple(acts.shape)} — choose an earlier layer"
            )
        w = grads.mean(dim=tuple(range(2, grads.dim())), keepdim=True)
        cam = (w * acts).sum(dim=1, keepdim=True)
        extra = {"layer": name, "channel_weights": w.flatten(1)}
        return Attribution(F.relu(cam) if self.relu else cam, done.scores, done.indices, extra)


@register
@dataclass(frozen=True, kw_only=True)
class GuidedGradCam(Method):
    """Guided Grad-CAM: guided backprop times the rectified Grad-CAM, upsampled.

    Parameters
    ----------
    layer : str or None
        As for :class:`GradCam`.
    interpolation : str
        How the map is upsampled to the input: ``"bilinear"`` (default, as in the
        paper), ``"nearest"`` (Captum's default) or ``"bicubic"``.
    rectifiers : "auto", "all", collection of str, or callable
        Which ReLU-like calls guided backprop rewrites; see :class:`GuidedBackprop`.
    """

    layer: str | None = None
    interpolation: str = "bilinear"
    rectifiers: Rectifiers = "auto"

    name = "guided_grad_cam"
    result_type = GuidedGradCamExplanation
    passes_per_row = 2

    def clean_pass_needs(self, run: Run, x: Tensor) -> tuple[bool, str | None]:
        return False, resolve_layer(run, x, self.layer)[0]

    def __post_init__(self) -> None:
        if self.interpolation not in INTERPOLATIONS:
            raise InvalidOptionError(
                f"unknown interpolation {self.interpolation!r} (valid: {', '.join(INTERPOLATIONS)})"
            )
        object.__setattr__(self, "rectifiers", check_rectifiers(self.rectifiers))

    def attribute_rows(self, run: Run, x: Tensor, target: Target) -> Attribution:
        cam = GradCam(layer=self.layer, relu=True).attribute_rows(run, x, target)
        target = target.fixed(cam.indices)
        guided = rectified_gradients(run, x, target, "guided", self.name, self.rectifiers)
        align = False if self.interpolation != "nearest" else None
        upsampled = F.interpolate(
            cam.values, size=x.shape[2:], mode=self.interpolation, align_corners=align
        )
        return Attribution(
            guided.values * upsampled, cam.scores, cam.indices, {**cam.extra, **guided.extra}
        )

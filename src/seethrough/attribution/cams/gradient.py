"""Gradient CAMs: one pass, the backward stops at the layer; and Guided Grad-CAM.

Each map is computed from the layer's activation ``A`` and gradient ``g`` only, raw at
the layer's resolution ``(N, 1, h, w)`` (``relu=True`` rectifies it). The formulas
follow pytorch-grad-cam (1.5) before its ``np.maximum`` and ``scale_cam_image``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ...core.rules import Rectifiers, check_rectifiers
from ...core.targets import Target
from ...errors import one_of, option
from ..explanation import (
    CamDetails,
    GuidedDetails,
    GuidedGradCamDetails,
    GuidedGradCamExplanation,
)
from ..guided import rectified_gradients
from ..method import Attribution, Method, register
from ..run import PassContext, PassNeeds
from ._base import LAYER, _LayerCam, resolve_layer, spatial, weighted

__all__ = [
    "GRAD_CAM_PP_EPS",
    "INTERPOLATIONS",
    "XGRAD_CAM_EPS",
    "GradCam",
    "GradCamPlusPlus",
    "GuidedGradCam",
    "HiResCam",
    "LayerCam",
    "XGradCam",
]

GRAD_CAM_PP_EPS = 1e-6  # pytorch-grad-cam's constants, kept for exact agreement
XGRAD_CAM_EPS = 1e-7
INTERPOLATIONS = ("bilinear", "nearest", "bicubic")


@dataclass(frozen=True, kw_only=True)
class _GradientCam(_LayerCam):
    """A CAM computed from the layer's activation ``A`` and gradient ``g`` only."""

    def clean_pass_needs(self, ctx: PassContext, x: Tensor) -> PassNeeds:
        return self._layer_needs(ctx, x)

    def cam_and_weights(self, acts: Tensor, grads: Tensor) -> tuple[Tensor, Tensor]:
        """The map ``(N, 1, h, w)`` and the channel weights ``(N, K)``."""
        raise NotImplementedError

    def attribute_rows(self, ctx: PassContext, x: Tensor, target: Target) -> Attribution:
        name, clean, acts, grads = self._layer_pass(ctx, x, target)
        cam, weights = self.cam_and_weights(acts, grads)
        return self._result(cam, clean, CamDetails(layer=name, channel_weights=weights))


@register
@dataclass(frozen=True, kw_only=True)
class GradCam(_GradientCam):
    """Grad-CAM (Selvaraju et al., 2017): the layer's channels weighted by their
    spatially averaged gradients.

    ``sum_k mean_ij(d score / d A_kij) · A_k``, at the layer's resolution ``(N, 1, h, w)``
    — the backward pass stops at the layer. Raw by default (no ReLU, no min-max, like
    Captum's ``LayerGradCam``); ``relu=True`` gives the paper's rectified map. Upsample
    with :meth:`Explanation.to_input_size`.

    Parameters
    ----------
    layer : str, list of str, or None
        Dotted module name; ``None`` picks the last layer with a spatial output. A list
        of names fuses the maps of several layers
        (:mod:`seethrough.attribution.cams.multilayer`).
    relu : bool
        Rectify the map (default False).
    """

    name = "grad_cam"

    def cam_and_weights(self, acts: Tensor, grads: Tensor) -> tuple[Tensor, Tensor]:
        weights = grads.mean(dim=spatial(grads))
        return weighted(acts, weights), weights


@register
@dataclass(frozen=True, kw_only=True)
class GuidedGradCam(Method):
    """Guided Grad-CAM (Selvaraju et al., 2017): guided backprop times the rectified
    Grad-CAM, upsampled.

    Parameters
    ----------
    layer : str or None
        As for :class:`GradCam` (one layer).
    interpolation : str
        How the map is upsampled to the input: ``"bilinear"`` (default, as in the
        paper), ``"nearest"`` (Captum's default) or ``"bicubic"``.
    rectifiers : "auto", "all", collection of str, or callable
        Which ReLU-like calls guided backprop rewrites; see
        :class:`~seethrough.attribution.GuidedBackprop`.
    """

    layer: str | None = option(None, check=LAYER)
    interpolation: str = option("bilinear", check=one_of(*INTERPOLATIONS))
    rectifiers: Rectifiers = "auto"  # checked (and normalised) by check_rectifiers

    name = "guided_grad_cam"
    result_type = GuidedGradCamExplanation
    passes_per_row = 2

    def validate(self) -> None:
        object.__setattr__(self, "rectifiers", check_rectifiers(self.rectifiers))

    def clean_pass_needs(self, ctx: PassContext, x: Tensor) -> PassNeeds:
        return PassNeeds(input_grad=False, layer=resolve_layer(ctx, x, self.layer)[0])

    def attribute_rows(self, ctx: PassContext, x: Tensor, target: Target) -> Attribution:
        cam = GradCam(layer=self.layer, relu=True).attribute_rows(ctx, x, target)
        target = target.fixed(cam.indices)
        guided = rectified_gradients(ctx, x, target, "guided", self.name, self.rectifiers)
        align = False if self.interpolation != "nearest" else None
        upsampled = F.interpolate(
            cam.values, size=x.shape[2:], mode=self.interpolation, align_corners=align
        )
        assert isinstance(cam.details, CamDetails) and isinstance(guided.details, GuidedDetails)
        details = GuidedGradCamDetails(
            layer=cam.details.layer,
            channel_weights=cam.details.channel_weights,
            rule_applications=guided.details.rule_applications,
            rewritten=guided.details.rewritten,
            untouched_nonlinearities=guided.details.untouched_nonlinearities,
        )
        return Attribution(
            guided.values * upsampled, cam.scores, cam.indices, cam.predicted, details
        )


@register
@dataclass(frozen=True, kw_only=True)
class GradCamPlusPlus(_GradientCam):
    """Grad-CAM++ (Chattopadhyay et al., 2018): higher-order channel weights.

    With the exponential-score trick (second and third derivatives of ``exp(score)``
    are powers of the gradient), ``alpha = g² / (2g² + sum_ab(A_ab) · g³ + 1e-6)``
    (zero where ``g = 0``) and ``w_k = sum_ij alpha · relu(g)`` — as pytorch-grad-cam.

    Parameters
    ----------
    layer, relu
        As for :class:`GradCam`.
    """

    name = "grad_cam_pp"

    def cam_and_weights(self, acts: Tensor, grads: Tensor) -> tuple[Tensor, Tensor]:
        axes = spatial(acts)
        g2 = grads**2
        total = acts.sum(dim=axes, keepdim=True)
        alpha = g2 / (2 * g2 + total * g2 * grads + GRAD_CAM_PP_EPS)
        alpha = torch.where(grads != 0, alpha, torch.zeros_like(alpha))
        weights = (alpha * F.relu(grads)).sum(dim=axes)
        return weighted(acts, weights), weights


@register
@dataclass(frozen=True, kw_only=True)
class XGradCam(_GradientCam):
    """XGrad-CAM (Fu et al., 2020): ``w_k = sum_ij A_ij g_ij / (sum_ij A_ij + 1e-7)``.

    Parameters
    ----------
    layer, relu
        As for :class:`GradCam`.
    """

    name = "xgrad_cam"

    def cam_and_weights(self, acts: Tensor, grads: Tensor) -> tuple[Tensor, Tensor]:
        axes = spatial(acts)
        total = acts.sum(dim=axes, keepdim=True)
        weights = (grads * acts / (total + XGRAD_CAM_EPS)).sum(dim=axes)
        return weighted(acts, weights), weights


@register
@dataclass(frozen=True, kw_only=True)
class HiResCam(_GradientCam):
    """HiResCAM (Draelos & Carin, 2020): ``sum_k g_k ⊙ A_k``, element-wise.

    ``channel_weights`` holds each channel's summed contribution ``sum_ij g·A`` (the
    map has no single weight per channel).

    Parameters
    ----------
    layer, relu
        As for :class:`GradCam`.
    """

    name = "hires_cam"

    def cam_and_weights(self, acts: Tensor, grads: Tensor) -> tuple[Tensor, Tensor]:
        return _elementwise(grads * acts)


@register
@dataclass(frozen=True, kw_only=True)
class LayerCam(_GradientCam):
    """LayerCAM (Jiang et al., 2021): ``sum_k relu(g_k) ⊙ A_k``, element-wise.

    ``channel_weights`` holds each channel's summed contribution ``sum_ij relu(g)·A``.

    Parameters
    ----------
    layer, relu
        As for :class:`GradCam`.
    """

    name = "layer_cam"

    def cam_and_weights(self, acts: Tensor, grads: Tensor) -> tuple[Tensor, Tensor]:
        return _elementwise(F.relu(grads) * acts)


def _elementwise(product: Tensor) -> tuple[Tensor, Tensor]:
    """An element-wise CAM ``sum_k P_k`` ``(N, 1, h, w)`` of the per-channel product
    ``P`` ``(N, K, h, w)``, and each channel's summed contribution ``sum_ij P``."""
    return product.sum(dim=1, keepdim=True), product.sum(dim=spatial(product))

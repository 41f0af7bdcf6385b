"""Eigen-CAM: the first principal component of a layer's activations."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ...core.targets import Target
from ..explanation import CamDetails
from ..method import Attribution, register
from ..run import PassContext, PassNeeds
from ._base import _LayerCam

__all__ = ["EigenCam"]


@register
@dataclass(frozen=True, kw_only=True)
class EigenCam(_LayerCam):
    """Eigen-CAM (Muhammad & Yeasin, 2020): the activations' first principal component.

    Per image, the ``(h·w, K)`` activations are centred over positions (``C``) and
    projected on their first right singular vector ``v`` (pytorch-grad-cam's
    ``get_2d_projection``); ``channel_weights`` is ``v``. The map does not depend on
    the target.

    A singular vector's sign is arbitrary (pytorch-grad-cam keeps whichever LAPACK
    returns, which means nothing). We orient the map to correlate positively with the
    channel-mean activation map ``mean_k A_k`` — the plain "where is the layer active"
    reading. Since ``cov(C v, C 1 / K) = σ₁² · Σ_k v_k / (h·w·K)``, that is the sign of
    ``Σ_k v_k``, which is how it is computed; a component exactly uncorrelated with
    the mean map (``Σ_k v_k = 0``) keeps the SVD's sign. On the six bundled photos
    (EfficientNet-Lite0, ``_act_head``) the correlation with the mean map is
    0.47–0.90. The rule orients the map; it does not move its peak onto the object:
    the map is class-agnostic, and on three of those photos it peaks outside a
    hand-made box of the main object, on two of them with either sign
    (``tests/test_cam_signs.py``).

    Parameters
    ----------
    layer, relu
        As for :class:`~seethrough.attribution.GradCam`.
    """

    name = "eigen_cam"

    def clean_pass_needs(self, ctx: PassContext, x: Tensor) -> PassNeeds:
        return self._layer_needs(ctx, x)

    def attribute_rows(self, ctx: PassContext, x: Tensor, target: Target) -> Attribution:
        name, clean, acts, _ = self._layer_pass(ctx, x, target)
        flat = acts.flatten(2).transpose(1, 2)  # (N, h·w, K)
        centred = flat - flat.mean(dim=1, keepdim=True)
        v = torch.linalg.svd(centred, full_matrices=False).Vh[:, 0]  # (N, K)
        v = torch.where(v.sum(dim=1, keepdim=True) < 0, -v, v)
        cam = (centred @ v[:, :, None]).reshape(len(x), 1, *acts.shape[2:])
        return self._result(cam, clean, CamDetails(layer=name, channel_weights=v))

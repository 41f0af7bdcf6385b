"""Control "explainers" that ignore the model, for the sanity checks' tables.

Adebayo et al. (2018) compare saliency maps with an edge detector: a map that looks like
the image's edges may say nothing about the model. ``edge_detector`` is that control and
``random_noise`` its opposite; run through the same checks, they show what failing
(edges: unchanged by any randomization, similarity 1) and trivially passing (noise:
unrelated to everything, similarity ≈ 0 — each model draws its own noise) look like.
Both still run one forward pass, to validate the target and report the explained class
and score like every method. They register with ``kind = "control"``: ``explain`` runs
them by name, but :func:`~seethrough.attribution.method_names` and ``--methods all`` list
only real methods (``method_names(include_controls=True)`` lists them too).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..attribution import Attribution, Method, PassContext, register
from ..core.targets import Target

__all__ = ["EdgeDetector", "RandomNoise", "sobel_edges"]

_SOBEL_X = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])


def sobel_edges(x: Tensor) -> Tensor:
    """Sobel gradient magnitude of every channel of ``x`` ``(N, C, H, W)``, same shape
    (edges replicated at the border)."""
    kx = _SOBEL_X.to(x.device, x.dtype)
    kernels = torch.stack([kx, kx.T])[:, None]  # (2, 1, 3, 3)
    c = x.shape[1]
    padded = F.pad(x, (1, 1, 1, 1), mode="replicate")
    g = F.conv2d(padded, kernels.repeat(c, 1, 1, 1), groups=c)  # (N, 2C, H, W)
    g = g.reshape(x.shape[0], c, 2, *x.shape[2:])
    return g.pow(2).sum(dim=2).sqrt()


@register
@dataclass(frozen=True, kw_only=True)
class EdgeDetector(Method):
    """Control: the Sobel edge magnitude of the input, per channel (ignores the model)."""

    name = "edge_detector"
    kind = "control"
    display = "magnitude"

    def attribute_rows(self, ctx: PassContext, x: Tensor, target: Target) -> Attribution:
        fixed, scores, predicted = ctx.resolve(x, target)
        indices = fixed.indices_or_unknown(len(x), x.device)
        return Attribution(sobel_edges(x), scores, indices, predicted)


@register
@dataclass(frozen=True, kw_only=True)
class RandomNoise(Method):
    """Control: i.i.d. standard normal values, one draw per pixel and channel, row ``i``
    from a generator seeded with ``seed + i`` (ignores the model).

    The sanity checks explain every model with its own seed, so this control's rows show
    the noise floor — the similarity of two unrelated maps, ≈ 0 — next to the edge
    detector's ceiling of 1.
    """

    name = "random_noise"
    kind = "control"

    def attribute_rows(self, ctx: PassContext, x: Tensor, target: Target) -> Attribution:
        fixed, scores, predicted = ctx.resolve(x, target)
        noise = torch.stack(
            [
                torch.randn(x.shape[1:], generator=ctx.generator(i), device=x.device, dtype=x.dtype)
                for i in range(len(x))
            ]
        )
        return Attribution(noise, scores, fixed.indices_or_unknown(len(x), x.device), predicted)

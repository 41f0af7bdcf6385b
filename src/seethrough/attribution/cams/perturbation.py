"""Perturbation CAMs: Score-CAM and Ablation-CAM.

Each channel's weight comes from an extra forward pass per channel and image, run in
chunks under the memory budget. The maps stay raw at the layer's resolution.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...core.hooks import HookSet
from ...core.layers import find_layer
from ...core.passes import forward_scores
from ...core.targets import Target
from ...errors import LayerError, one_of, option
from ..explanation import CamDetails, CamExplanation
from ..method import Attribution, register
from ..perturbation import forward_probabilities, needs_classes
from ..run import PassContext
from ._base import _LayerCam, weighted

__all__ = [
    "SCORE_CAM_EPS",
    "SCORE_CAM_WEIGHTINGS",
    "AblationCam",
    "PerturbationCamDetails",
    "PerturbationCamExplanation",
    "ScoreCam",
]

SCORE_CAM_EPS = 1e-8  # pytorch-grad-cam's constant, kept for exact agreement
SCORE_CAM_WEIGHTINGS = ("channel_softmax", "probability")


@dataclass(frozen=True, eq=False, kw_only=True)
class PerturbationCamDetails(CamDetails):
    """A CAM's layer and weights plus each channel's perturbed score: see
    :class:`PerturbationCamExplanation`."""

    channel_scores: Tensor


@dataclass(frozen=True, eq=False, kw_only=True)
class PerturbationCamExplanation(CamExplanation, PerturbationCamDetails):
    """A CAM whose channel weights come from extra forward passes.

    ``channel_scores`` ``(N, K)`` is the target score of each row with channel ``k``
    perturbed: the masked input (Score-CAM) or the layer with channel ``k`` zeroed
    (Ablation-CAM).
    """


def _row_split(start: int, stop: int, channels: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """Image and channel of each row ``start:stop`` of the (image, channel) grid."""
    rows = torch.arange(start, stop, device=device)
    return rows // channels, rows % channels


def _per_channel_target(target: Target, indices: Tensor, channels: int) -> Target:
    """The target of every (image, channel) row: each image's class, repeated."""
    return target.fixed(indices.repeat_interleave(channels))


@register
@dataclass(frozen=True, kw_only=True)
class ScoreCam(_LayerCam):
    """Score-CAM (Wang et al., 2020): channels weighted by the score of masked inputs.

    Each channel's activation is upsampled to the input (bilinear), min-max scaled to
    [0, 1] per channel, and multiplies the input; the weight of channel ``k`` comes
    from the target's score on that masked input (in ``channel_scores``). Two forms
    (``weighting``):

    * ``"channel_softmax"`` (default, pytorch-grad-cam's): corners aligned (its
      ``nn.UpsamplingBilinear2d``), ``+1e-8`` in the min-max, and ``w = softmax_k``
      of the masked inputs' target *logits* — normalised across channels.
    * ``"probability"`` (the paper's, as its official code haofanwang/Score-CAM
      ``cam/scorecam.py`` computes it): corners not aligned, an exact min-max, and
      ``w_k`` = the masked input's *class probability* (softmax over the classes),
      not normalised across channels; a constant channel (no mask) gets ``w_k = 0``.
      The paper's "increase of confidence" ``f(X ∘ H_k) − f(X_b)`` subtracts a
      baseline score; the official code does not, and neither do we (the shift
      would add ``−f(X_b) · Σ_k A_k`` to the map). Needs class targets.

    Deviation from the paper in the default: the channel softmax is pytorch-grad-cam's,
    kept for agreement with it. Either way the map stays raw at the layer's resolution
    (the official code then applies ReLU and min-max: ``relu=True`` and ``viz/``).
    Costs one forward pass per channel and image, run in chunks whose masked inputs are
    built on the device when the chunk runs.

    Parameters
    ----------
    layer, relu
        As for :class:`~seethrough.attribution.GradCam`.
    weighting : str
        ``"channel_softmax"`` (default) or ``"probability"``; see above.

    Raises
    ------
    TargetError
        ``weighting="probability"`` with a callable target.
    """

    weighting: str = option("channel_softmax", check=one_of(*SCORE_CAM_WEIGHTINGS))

    name = "score_cam"
    result_type = PerturbationCamExplanation

    def attribute_rows(self, ctx: PassContext, x: Tensor, target: Target) -> Attribution:
        paper = self.weighting == "probability"
        if paper:
            needs_classes(self.name, "weighting='probability'", target)
        name, clean, acts, _ = self._layer_pass(ctx, x, target)
        k = acts.shape[1]

        def masked(start: int, stop: int) -> Tensor:
            image, channel = _row_split(start, stop, k, x.device)
            maps = acts[image, channel][:, None]
            up = F.interpolate(maps, size=x.shape[2:], mode="bilinear", align_corners=not paper)
            low = up.amin(dim=(2, 3), keepdim=True)
            span = up.amax(dim=(2, 3), keepdim=True) - low
            if paper:  # a constant channel masks nothing out; its weight is 0 below
                return x[image] * torch.where(span > 0, (up - low) / span, 0.0)
            return x[image] * ((up - low) / (span + SCORE_CAM_EPS))

        rows_target = _per_channel_target(target, clean.indices, k)
        ctx.plan_more_rows(len(x) * k)  # planned_rows counted only the clean pass
        if paper:
            assert rows_target.indices is not None
            scores = forward_probabilities(
                ctx.model, masked, len(x) * k, rows_target.indices, ctx.budget
            ).reshape(len(x), k)
            flat = acts.flatten(2)
            constant = flat.amax(dim=2) == flat.amin(dim=2)
            weights = torch.where(constant, 0.0, scores)
        else:
            scores, _ = forward_scores(ctx.model, masked, len(x) * k, rows_target, ctx.budget)
            scores = scores.reshape(len(x), k)
            weights = torch.softmax(scores, dim=1)
        details = PerturbationCamDetails(layer=name, channel_weights=weights, channel_scores=scores)
        return self._result(weighted(acts, weights), clean, details)


@register
@dataclass(frozen=True, kw_only=True)
class AblationCam(_LayerCam):
    """Ablation-CAM (Desai & Ramaswamy, 2020): ``w_k = (y − y_k) / |y|``.

    ``y`` is the target score, ``y_k`` the score with channel ``k`` of the layer set to
    zero (the paper's ablation; in ``channel_scores``). A forward hook on the layer
    zeroes a different channel in each row of a chunk, so one pass ablates many
    channels; every row still runs the whole network. pytorch-grad-cam zeroes too when
    the layer's minimum is 0 (after a ReLU) and otherwise sets the channel to
    ``min − 1e7``; we always zero.

    Deviation from the paper (and pytorch-grad-cam): they divide by ``y``, which
    flips every weight when the target score is negative (a non-predicted class,
    ``target="top3"``), so the map paints the channels that support the class as
    opposing it. We divide by ``|y|``: ``w_k > 0`` exactly when removing channel ``k``
    lowers the target score, and for ``y > 0`` nothing changes. Where ``y`` is zero to
    the scores' precision (``|y| ≤ eps · max(|y|, max_k |y_k|)``) the relative drop is
    undefined; those rows get the unnormalised drops ``w_k = y − y_k`` (same signs,
    another scale) and a warning.

    Parameters
    ----------
    layer, relu
        As for :class:`~seethrough.attribution.GradCam`.
    """

    name = "ablation_cam"
    result_type = PerturbationCamExplanation

    def attribute_rows(self, ctx: PassContext, x: Tensor, target: Target) -> Attribution:
        name, clean, acts, _ = self._layer_pass(ctx, x, target)
        module = find_layer(ctx.model, name)
        k = acts.shape[1]
        rows_target = _per_channel_target(target, clean.indices, k)
        ctx.plan_more_rows(len(x) * k)  # planned_rows counted only the clean pass
        parts: list[Tensor] = []

        def step(start: int, stop: int) -> None:
            image, channel = _row_split(start, stop, k, x.device)
            hook = _zero_channel_hook(name, channel)
            rows = ctx.budget.arrange(ctx.model, x[image])
            with HookSet() as hooks, torch.inference_mode():
                hooks.add(module.register_forward_hook(hook))
                scores, _ = rows_target.select(ctx.model(rows), slice(start, stop))
            parts.append(scores.detach())

        ctx.budget.run(len(x) * k, step)
        ablated = torch.cat(parts).reshape(len(x), k)
        weights = _relative_drops(clean.scores, ablated)
        details = PerturbationCamDetails(
            layer=name, channel_weights=weights, channel_scores=ablated
        )
        return self._result(weighted(acts, weights), clean, details)


def _relative_drops(scores: Tensor, ablated: Tensor) -> Tensor:
    """``(y − y_k) / |y|`` per row, or ``y − y_k`` (with a warning) where ``y`` is 0 to
    the precision of the scores."""
    y = scores[:, None]
    drops = y - ablated
    eps = torch.finfo(scores.dtype).eps
    scale = torch.maximum(y.abs(), ablated.abs().amax(dim=1, keepdim=True))
    zero = y.abs() <= eps * scale
    if bool(zero.any()):
        rows = zero[:, 0].nonzero()[:, 0].tolist()
        warnings.warn(
            f"ablation_cam: the target score is 0 for row(s) {rows}, so the relative drop "
            "(y − y_k) / |y| is undefined; their channel weights are the drops y − y_k "
            "(same signs, another scale)",
            stacklevel=6,
        )
    return drops / torch.where(zero, torch.ones_like(y), y.abs())


def _zero_channel_hook(name: str, channel: Tensor) -> Callable[[nn.Module, Any, Any], Tensor]:
    """A forward hook that zeroes channel ``channel[r]`` in row ``r`` of the output."""
    calls = [0]

    def hook(module: nn.Module, inputs: Any, output: Any) -> Tensor:
        calls[0] += 1
        if calls[0] > 1:
            raise LayerError(
                f"layer {name!r} runs more than once per forward pass (a reused module); "
                "choose a layer that runs once, e.g. its parent block"
            )
        out = output.clone()
        out[torch.arange(len(out), device=out.device), channel] = 0
        return out

    return hook

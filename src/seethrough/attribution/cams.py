"""The CAM family beyond Grad-CAM: gradient CAMs, perturbation CAMs, Eigen-CAM and CAM.

Every method returns a raw map at the layer's resolution ``(N, 1, h, w)`` — no ReLU, no
min-max (``relu=True`` rectifies it); upsample with :meth:`Explanation.to_input_size`.
The formulas follow pytorch-grad-cam (1.5) before its ``np.maximum`` and
``scale_cam_image``, so that its maps and ours agree up to that normalisation — except
where a class says otherwise (Ablation-CAM with a negative target score; Score-CAM's
``weighting="probability"``; Eigen-CAM's sign).

* gradient CAMs — ``grad_cam_pp``, ``xgrad_cam``, ``hires_cam``, ``layer_cam``: one pass,
  the backward stops at the layer;
* perturbation CAMs — ``score_cam``, ``ablation_cam``: one extra forward pass per
  channel and image, in chunks under the memory budget;
* ``eigen_cam``: the first principal component of the activations (class-agnostic);
* ``cam``: the original CAM for global-average-pooling + linear heads.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..core.hooks import HookSet
from ..core.layers import find_layer, trace_layers
from ..core.passes import forward_scores
from ..core.targets import Target
from ..errors import InvalidOptionError, LayerError, TargetError
from .base import Attribution, CleanPass, Method, Run, register
from .cam import resolve_layer
from .explanation import CamExplanation, Explanation
from .perturbation import forward_probabilities, needs_classes

__all__ = [
    "AblationCam",
    "Cam",
    "EigenCam",
    "GradCamPlusPlus",
    "HiResCam",
    "LayerCam",
    "PerturbationCamExplanation",
    "ScoreCam",
    "XGradCam",
]

GRAD_CAM_PP_EPS = 1e-6  # pytorch-grad-cam's constants, kept for exact agreement
XGRAD_CAM_EPS = 1e-7
SCORE_CAM_EPS = 1e-8
SCORE_CAM_WEIGHTINGS = ("channel_softmax", "probability")


@dataclass(frozen=True, eq=False, kw_only=True)
class PerturbationCamExplanation(CamExplanation):
    """A CAM whose channel weights come from extra forward passes.

    ``channel_scores`` ``(N, K)`` is the target score of each row with channel ``k``
    perturbed: the masked input (Score-CAM) or the layer with channel ``k`` zeroed
    (Ablation-CAM).
    """

    channel_scores: Tensor


def _spatial(t: Tensor) -> tuple[int, ...]:
    return tuple(range(2, t.dim()))


def _check_spatial(method: str, name: str, acts: Tensor) -> None:
    if acts.dim() < 3:
        raise LayerError(
            f"{method} needs a layer with a spatial output (N, C, h, w); layer {name!r} "
            f"outputs {tuple(acts.shape)} — choose an earlier layer"
        )


def _weighted(acts: Tensor, weights: Tensor) -> Tensor:
    """``sum_k w_k · A_k`` as ``(N, 1, h, w)``."""
    shape = weights.shape + (1,) * (acts.dim() - 2)
    return (weights.reshape(shape) * acts).sum(dim=1, keepdim=True)


class _LayerCam(Method):
    """Shared plumbing: the layer option, the clean pass, the result."""

    layer: str | None
    relu: bool

    resolution = "layer"
    result_type: ClassVar[type[Explanation]] = CamExplanation

    def _layer_pass(
        self, run: Run, x: Tensor, target: Target
    ) -> tuple[str, CleanPass, Tensor, Tensor]:
        """The layer's name, the clean pass, its activation and gradient."""
        name, module = resolve_layer(run, x, self.layer)
        done = run.clean_pass(x, target, input_grad=False, layer=(name, module))
        assert done.activation is not None and done.layer_grad is not None
        _check_spatial(self.name, name, done.activation)
        return name, done, done.activation, done.layer_grad

    def _result(
        self,
        cam: Tensor,
        done: CleanPass | Attribution,
        name: str,
        weights: Tensor,
        **extra: Any,
    ) -> Attribution:
        values = F.relu(cam) if self.relu else cam
        info = {"layer": name, "channel_weights": weights, **extra}
        return Attribution(values, done.scores, done.indices, info)


class _GradientCam(_LayerCam):
    """A CAM computed from the layer's activation ``A`` and gradient ``g`` only."""

    def clean_pass_needs(self, run: Run, x: Tensor) -> tuple[bool, str | None]:
        return False, resolve_layer(run, x, self.layer)[0]

    def cam_and_weights(self, acts: Tensor, grads: Tensor) -> tuple[Tensor, Tensor]:
        """The map ``(N, 1, h, w)`` and the channel weights ``(N, K)``."""
        raise NotImplementedError

    def attribute_rows(self, run: Run, x: Tensor, target: Target) -> Attribution:
        name, done, acts, grads = self._layer_pass(run, x, target)
        cam, weights = self.cam_and_weights(acts, grads)
        return self._result(cam, done, name, weights)


@register
@dataclass(frozen=True, kw_only=True)
class GradCamPlusPlus(_GradientCam):
    """Grad-CAM++ (Chattopadhyay et al., 2018): higher-order channel weights.

    With the exponential-score trick (second and third derivatives of ``exp(score)``
    are powers of the gradient), ``alpha = g² / (2g² + sum_ab(A_ab) · g³ + 1e-6)``
    (zero where ``g = 0``) and ``w_k = sum_ij alpha · relu(g)`` — as pytorch-grad-cam.

    Parameters
    ----------
    layer : str or None
        Dotted module name; ``None`` picks the last layer with a spatial output.
    relu : bool
        Rectify the map (default False).
    """

    layer: str | None = None
    relu: bool = False

    name = "grad_cam_pp"

    def cam_and_weights(self, acts: Tensor, grads: Tensor) -> tuple[Tensor, Tensor]:
        axes = _spatial(acts)
        g2 = grads**2
        total = acts.sum(dim=axes, keepdim=True)
        alpha = g2 / (2 * g2 + total * g2 * grads + GRAD_CAM_PP_EPS)
        alpha = torch.where(grads != 0, alpha, torch.zeros_like(alpha))
        weights = (alpha * F.relu(grads)).sum(dim=axes)
        return _weighted(acts, weights), weights


@register
@dataclass(frozen=True, kw_only=True)
class XGradCam(_GradientCam):
    """XGrad-CAM (Fu et al., 2020): ``w_k = sum_ij A_ij g_ij / (sum_ij A_ij + 1e-7)``.

    Parameters
    ----------
    layer, relu
        As for :class:`GradCamPlusPlus`.
    """

    layer: str | None = None
    relu: bool = False

    name = "xgrad_cam"

    def cam_and_weights(self, acts: Tensor, grads: Tensor) -> tuple[Tensor, Tensor]:
        axes = _spatial(acts)
        total = acts.sum(dim=axes, keepdim=True)
        weights = (grads * acts / (total + XGRAD_CAM_EPS)).sum(dim=axes)
        return _weighted(acts, weights), weights


@register
@dataclass(frozen=True, kw_only=True)
class HiResCam(_GradientCam):
    """HiResCAM (Draelos & Carin, 2020): ``sum_k g_k ⊙ A_k``, element-wise.

    ``channel_weights`` holds each channel's summed contribution ``sum_ij g·A`` (the
    map has no single weight per channel).

    Parameters
    ----------
    layer, relu
        As for :class:`GradCamPlusPlus`.
    """

    layer: str | None = None
    relu: bool = False

    name = "hires_cam"

    def cam_and_weights(self, acts: Tensor, grads: Tensor) -> tuple[Tensor, Tensor]:
        product = grads * acts
        return product.sum(dim=1, keepdim=True), product.sum(dim=_spatial(acts))


@register
@dataclass(frozen=True, kw_only=True)
class LayerCam(_GradientCam):
    """LayerCAM (Jiang et al., 2021): ``sum_k relu(g_k) ⊙ A_k``, element-wise.

    ``channel_weights`` holds each channel's summed contribution ``sum_ij relu(g)·A``.

    Parameters
    ----------
    layer, relu
        As for :class:`GradCamPlusPlus`.
    """

    layer: str | None = None
    relu: bool = False

    name = "layer_cam"

    def cam_and_weights(self, acts: Tensor, grads: Tensor) -> tuple[Tensor, Tensor]:
        product = F.relu(grads) * acts
        return product.sum(dim=1, keepdim=True), product.sum(dim=_spatial(acts))


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
        As for :class:`GradCamPlusPlus`.
    weighting : str
        ``"channel_softmax"`` (default) or ``"probability"``; see above.

    Raises
    ------
    TargetError
        ``weighting="probability"`` with a callable target.
    """

    layer: str | None = None
    relu: bool = False
    weighting: str = "channel_softmax"

    name = "score_cam"
    result_type = PerturbationCamExplanation

    def __post_init__(self) -> None:
        if self.weighting not in SCORE_CAM_WEIGHTINGS:
            raise InvalidOptionError(
                f"unknown weighting {self.weighting!r} (valid: {', '.join(SCORE_CAM_WEIGHTINGS)})"
            )

    def attribute_rows(self, run: Run, x: Tensor, target: Target) -> Attribution:
        paper = self.weighting == "probability"
        if paper:
            needs_classes(self.name, "weighting='probability'", target)
        name, done, acts, _ = self._layer_pass(run, x, target)
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

        rows_target = _per_channel_target(target, done.indices, k)
        run.planned += len(x) * k  # planned_rows counted only the clean pass
        if paper:
            assert rows_target.indices is not None
            scores = forward_probabilities(
                run.model, masked, len(x) * k, rows_target.indices, run.budget
            ).reshape(len(x), k)
            flat = acts.flatten(2)
            constant = flat.amax(dim=2) == flat.amin(dim=2)
            weights = torch.where(constant, 0.0, scores)
        else:
            scores, _ = forward_scores(run.model, masked, len(x) * k, rows_target, run.budget)
            scores = scores.reshape(len(x), k)
            weights = torch.softmax(scores, dim=1)
        return self._result(_weighted(acts, weights), done, name, weights, channel_scores=scores)


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
        As for :class:`GradCamPlusPlus`.
    """

    layer: str | None = None
    relu: bool = False

    name = "ablation_cam"
    result_type = PerturbationCamExplanation

    def attribute_rows(self, run: Run, x: Tensor, target: Target) -> Attribution:
        name, done, acts, _ = self._layer_pass(run, x, target)
        module = find_layer(run.model, name)
        k = acts.shape[1]
        rows_target = _per_channel_target(target, done.indices, k)
        run.planned += len(x) * k  # planned_rows counted only the clean pass
        parts: list[Tensor] = []

        def step(start: int, stop: int) -> None:
            image, channel = _row_split(start, stop, k, x.device)
            hook = _zero_channel_hook(name, channel)
            rows = run.budget.arrange(run.model, x[image])
            with HookSet() as hooks, torch.inference_mode():
                hooks.add(module.register_forward_hook(hook))
                scores, _ = rows_target.select(run.model(rows), slice(start, stop))
            parts.append(scores.detach())

        run.budget.run(len(x) * k, step)
        ablated = torch.cat(parts).reshape(len(x), k)
        weights = _relative_drops(done.scores, ablated)
        cam = _weighted(acts, weights)
        return self._result(cam, done, name, weights, channel_scores=ablated)


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
            stacklevel=5,
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
        As for :class:`GradCamPlusPlus`.
    """

    layer: str | None = None
    relu: bool = False

    name = "eigen_cam"

    def clean_pass_needs(self, run: Run, x: Tensor) -> tuple[bool, str | None]:
        return False, resolve_layer(run, x, self.layer)[0]

    def attribute_rows(self, run: Run, x: Tensor, target: Target) -> Attribution:
        name, done, acts, _ = self._layer_pass(run, x, target)
        flat = acts.flatten(2).transpose(1, 2)  # (N, h·w, K)
        centred = flat - flat.mean(dim=1, keepdim=True)
        v = torch.linalg.svd(centred, full_matrices=False).Vh[:, 0]  # (N, K)
        v = torch.where(v.sum(dim=1, keepdim=True) < 0, -v, v)
        cam = (centred @ v[:, :, None]).reshape(len(x), 1, *acts.shape[2:])
        return self._result(cam, done, name, v)


@register
@dataclass(frozen=True, kw_only=True)
class Cam(_LayerCam):
    """CAM (Zhou et al., 2016): ``sum_k W[c, k] · A_k`` for a global-average-pool +
    linear head, ``W`` the linear layer's weight and ``c`` the target class.

    ``A`` is ``layer``'s output, or with ``layer=None`` the input of the global pooling
    that feeds the linear layer (recorded as ``"<pool> (input)"``), so that a
    functional ReLU before the pooling is included. Before computing anything the
    head is checked: the linear layer's input must equal ``mean_ij A``, else
    :class:`LayerError`. Exact identity: CAM = Grad-CAM × ``h·w`` on such heads.

    Parameters
    ----------
    layer : str or None
        The layer whose output enters the pooling; see above for ``None``.
    fc : str or None
        The linear layer; ``None`` picks the last ``nn.Linear`` in execution order.
    relu : bool
        Rectify the map (default False).
    """

    layer: str | None = None
    fc: str | None = None
    relu: bool = False

    name = "cam"

    def attribute_rows(self, run: Run, x: Tensor, target: Target) -> Attribution:
        fc_name = self.fc if self.fc is not None else _last_linear(run.model, x)
        fc = find_layer(run.model, fc_name)
        if not isinstance(fc, nn.Linear):
            raise LayerError(
                f"cam needs fc= to name an nn.Linear; {fc_name!r} is {type(fc).__name__}"
            )
        name, acts, features, scores, indices = self._capture(run, x, target, fc)
        _check_spatial(self.name, name, acts)
        if bool((indices < 0).any()):
            raise TargetError("cam needs class targets (the weight row of a class), not a callable")
        _check_gap_linear(name, fc_name, acts, features, fc)
        weights = fc.weight.detach()[indices].to(acts.dtype)
        done = Attribution(acts, scores, indices)
        return self._result(_weighted(acts, weights), done, name, weights)

    def _capture(
        self, run: Run, x: Tensor, target: Target, fc: nn.Linear
    ) -> tuple[str, Tensor, Tensor, Tensor, Tensor]:
        """The map ``A``, the linear layer's input, scores and classes, chunk by chunk."""
        named = None if self.layer is None else (self.layer, find_layer(run.model, self.layer))
        parts: list[tuple[Tensor, Tensor, Tensor, Tensor]] = []
        label = [self.layer or ""]

        def step(start: int, stop: int) -> None:
            seen = _HeadCapture(run.model, fc, named)
            rows = run.budget.arrange(run.model, x[start:stop])
            with HookSet() as hooks, torch.no_grad():
                seen.attach(hooks)
                scores, indices = target.select(run.model(rows), slice(start, stop))
            if seen.features is None or seen.map is None:
                raise LayerError(_NOT_GAP_LINEAR.format(fc="the linear layer", why="no map found"))
            label[0] = seen.map_name
            parts.append((seen.map, seen.features, scores.detach(), indices))

        run.budget.run(len(x), step)
        acts, features, scores, indices = (torch.cat(p) for p in zip(*parts))
        return label[0], acts, features, scores, indices


_NOT_GAP_LINEAR = (
    "cam needs a head of global average pooling then {fc}, and {why}; use grad_cam "
    "(equal to CAM up to a constant on such heads) or pass layer=/fc= explicitly"
)


class _HeadCapture:
    """Hooks for CAM: the linear layer's input and the map before it.

    With a named layer the map is its output; without, the input of the last module
    that received a 4-D tensor before the linear layer ran (the global pooling).
    """

    def __init__(self, model: nn.Module, fc: nn.Linear, named: tuple[str, nn.Module] | None):
        self.model, self.fc, self.named = model, fc, named
        self.features: Tensor | None = None
        self.map: Tensor | None = None
        self.map_name = named[0] if named is not None else ""

    def attach(self, hooks: HookSet) -> None:
        hooks.add(self.fc.register_forward_pre_hook(self._fc_input))
        if self.named is not None:
            hooks.add(self.named[1].register_forward_hook(self._layer_output))
            return
        for name, module in self.model.named_modules():
            if name and module is not self.fc and not isinstance(module, torch.jit.ScriptModule):
                hooks.add(module.register_forward_pre_hook(self._pool_input(name)))

    def _fc_input(self, module: nn.Module, inputs: Any) -> None:
        if self.features is None and inputs and isinstance(inputs[0], Tensor):
            self.features = inputs[0].detach()

    def _layer_output(self, module: nn.Module, inputs: Any, output: Any) -> None:
        if isinstance(output, Tensor):
            self.map = output.detach().clone()

    def _pool_input(self, name: str) -> Callable[[nn.Module, Any], None]:
        def hook(module: nn.Module, inputs: Any) -> None:
            first = inputs[0] if inputs else None
            if self.features is None and first is not None and _is_spatial_map(first):
                self.map = first.detach().clone()
                self.map_name = f"{name} (input)"

        return hook


def _is_spatial_map(t: Any) -> bool:
    return isinstance(t, Tensor) and t.dim() == 4 and t.shape[2] * t.shape[3] > 1


def _check_gap_linear(
    name: str, fc_name: str, acts: Tensor, features: Tensor, fc: nn.Linear
) -> None:
    """Raise unless the linear layer's input is the global average of ``acts``."""
    pooled = acts.mean(dim=_spatial(acts))
    fc_label = f"the linear layer {fc_name!r}"
    if features.dim() != 2 or features.shape != pooled.shape:
        why = (
            f"its input {tuple(features.shape)} is not the pooled map of {name!r} "
            f"{tuple(pooled.shape)}"
        )
        raise LayerError(_NOT_GAP_LINEAR.format(fc=fc_label, why=why))
    tolerance = 1e-4 if acts.dtype != torch.float64 else 1e-10
    scale = float(pooled.abs().max()) + 1e-12
    if not torch.allclose(features, pooled, rtol=0, atol=tolerance * scale):
        why = f"its input is not the global average of {name!r}"
        raise LayerError(_NOT_GAP_LINEAR.format(fc=fc_label, why=why))


def _last_linear(model: nn.Module, x: Tensor) -> str:
    """The last ``nn.Linear`` to run in a forward pass."""
    modules = dict(model.named_modules())
    linear = [i.name for i in trace_layers(model, x[:1]) if isinstance(modules[i.name], nn.Linear)]
    if not linear:
        raise LayerError(
            _NOT_GAP_LINEAR.format(fc="a linear layer", why="the model has no nn.Linear")
        )
    return linear[-1]

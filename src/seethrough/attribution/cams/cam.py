"""CAM, the original class activation map, for global-average-pool + linear heads."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ...core.hooks import HookSet
from ...core.layers import find_layer, trace_layers
from ...core.targets import Target
from ...errors import LayerError, TargetError, option, optional, text
from ..explanation import CamDetails
from ..method import Attribution, register
from ..run import PassContext
from ._base import _LayerCam, check_spatial, spatial, weighted

__all__ = ["Cam"]


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

    fc: str | None = option(None, check=optional(text()))

    name = "cam"

    def attribute_rows(self, ctx: PassContext, x: Tensor, target: Target) -> Attribution:
        fc_name = self.fc if self.fc is not None else _last_linear(ctx.model, x)
        fc = find_layer(ctx.model, fc_name)
        if not isinstance(fc, nn.Linear):
            raise LayerError(
                f"cam needs fc= to name an nn.Linear; {fc_name!r} is {type(fc).__name__}"
            )
        name, acts, features, scores, indices = self._capture(ctx, x, target, fc)
        check_spatial(self.name, name, acts)
        if bool((indices < 0).any()):
            raise TargetError("cam needs class targets (the weight row of a class), not a callable")
        _check_gap_linear(name, fc_name, acts, features, fc)
        weights = fc.weight.detach()[indices].to(acts.dtype)
        captured = Attribution(acts, scores, indices)
        return self._result(
            weighted(acts, weights), captured, CamDetails(layer=name, channel_weights=weights)
        )

    def _capture(
        self, ctx: PassContext, x: Tensor, target: Target, fc: nn.Linear
    ) -> tuple[str, Tensor, Tensor, Tensor, Tensor]:
        """The map ``A``, the linear layer's input, scores and classes, chunk by chunk."""
        assert self.layer is None or isinstance(self.layer, str), "explain splits a list"
        named = None if self.layer is None else (self.layer, find_layer(ctx.model, self.layer))
        parts: list[tuple[Tensor, Tensor, Tensor, Tensor]] = []
        label = [self.layer or ""]

        def step(start: int, stop: int) -> None:
            seen = _HeadCapture(ctx.model, fc, named)
            rows = ctx.budget.arrange(ctx.model, x[start:stop])
            with HookSet() as hooks, torch.no_grad():
                seen.attach(hooks)
                scores, indices = target.select(ctx.model(rows), slice(start, stop))
            if seen.features is None or seen.map is None:
                raise LayerError(_NOT_GAP_LINEAR.format(fc="the linear layer", why="no map found"))
            label[0] = seen.map_name
            parts.append((seen.map, seen.features, scores.detach(), indices))

        ctx.budget.run(len(x), step)
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
    pooled = acts.mean(dim=spatial(acts))
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

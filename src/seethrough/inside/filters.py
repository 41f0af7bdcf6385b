"""The weights of a convolution, as a result to plot: what each filter looks for.

Reading weights changes nothing, so no guard is needed: :func:`filters` copies the
layer's weights to the CPU and never touches the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import InvalidInputError, LayerError, suggest

__all__ = ["Filters", "conv_layer_names", "filters"]

_SHOWN_NAMES = 6  # conv layers named in an error message


@dataclass(frozen=True, eq=False)
class Filters:
    """The filters of one ``nn.Conv2d``.

    Attributes
    ----------
    layer : str
        The layer's dotted name.
    weights : Tensor
        ``(out, in / groups, kh, kw)``: a detached CPU copy in the layer's dtype.
    bias : Tensor or None
        ``(out,)`` CPU copy, if the layer has one.
    in_channels, out_channels, groups : int
        As in the module; filter ``o`` sees input channels
        ``(o // (out / groups)) * (in / groups)`` onwards.
    stride, padding, dilation : tuple of int
        As in the module (``padding`` is ``(0, 0)`` for string paddings such as "same").
    """

    layer: str
    weights: Tensor
    bias: Tensor | None
    in_channels: int
    out_channels: int
    groups: int
    stride: tuple[int, ...]
    padding: tuple[int, ...]
    dilation: tuple[int, ...]

    @property
    def shape(self) -> tuple[int, ...]:
        """``(out, in / groups, kh, kw)``."""
        return tuple(self.weights.shape)

    @property
    def depthwise(self) -> bool:
        """Each filter sees one input channel of its own (``groups == in_channels``)."""
        return self.groups > 1 and self.groups == self.in_channels

    @property
    def grouped(self) -> bool:
        """The layer has several groups (depthwise included)."""
        return self.groups > 1

    def input_channels(self, filter: int) -> range:
        """The input channels filter ``filter`` sees (all of them unless grouped)."""
        per_group_out = self.out_channels // self.groups
        per_group_in = self.in_channels // self.groups
        first = (filter // per_group_out) * per_group_in
        return range(first, first + per_group_in)

    def norms(self) -> Tensor:
        """``(out, in / groups)``: the L2 norm of each 2-D kernel."""
        return self.weights.double().flatten(2).norm(dim=2)


def conv_layer_names(model: nn.Module) -> list[str]:
    """The dotted names of the model's ``nn.Conv2d`` layers, in registration order."""
    return [n for n, m in model.named_modules() if n and isinstance(m, nn.Conv2d)]


def module_of(model: Any) -> nn.Module:
    """The ``nn.Module`` of a module or a ``LoadedModel``."""
    if isinstance(model, nn.Module):
        return model
    module = getattr(model, "module", None)
    if isinstance(module, nn.Module):
        return module
    raise InvalidInputError(
        f"model must be a torch.nn.Module or a seethrough LoadedModel, got {type(model).__name__}"
    )


def _conv_error(model: nn.Module, layer: object, why: str) -> LayerError:
    convs = conv_layer_names(model)
    if not convs:
        return LayerError(f"{why}, and {type(model).__name__} has no Conv2d layer at all")
    shown = ", ".join(repr(n) for n in convs[:_SHOWN_NAMES])
    more = f" and {len(convs) - _SHOWN_NAMES} more" if len(convs) > _SHOWN_NAMES else ""
    hint = suggest(str(layer), convs)
    return LayerError(f"{why}{hint} (conv layers: {shown}{more})")


def filters(model: Any, layer: str) -> Filters:
    """Copy the filters of the ``nn.Conv2d`` called ``layer``.

    Parameters
    ----------
    model : nn.Module or LoadedModel
        The network (left untouched).
    layer : str
        Dotted module name, e.g. ``"conv1"`` or ``"_blocks.3._depthwise_conv"``.

    Returns
    -------
    Filters

    Raises
    ------
    LayerError
        No such layer, or the layer is not a ``Conv2d`` (the message lists the conv
        layers and suggests close names).
    """
    module = module_of(model)
    modules = dict(module.named_modules())
    if not isinstance(layer, str) or not layer or layer not in modules:
        raise _conv_error(module, layer, f"no layer {layer!r} in {type(module).__name__}")
    conv = modules[layer]
    if not isinstance(conv, nn.Conv2d):
        raise _conv_error(
            module, layer, f"layer {layer!r} is a {type(conv).__name__}, not a Conv2d"
        )
    with torch.no_grad():
        weights = conv.weight.detach().to("cpu", copy=True)
        bias = None if conv.bias is None else conv.bias.detach().to("cpu", copy=True)
    padding = conv.padding if isinstance(conv.padding, tuple) else (0, 0)
    return Filters(
        layer=layer,
        weights=weights,
        bias=bias,
        in_channels=conv.in_channels,
        out_channels=conv.out_channels,
        groups=conv.groups,
        stride=tuple(conv.stride),
        padding=tuple(padding),
        dilation=tuple(conv.dilation),
    )

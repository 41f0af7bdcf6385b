"""Receptive fields: which input pixels each unit of a layer sees.

Computed exactly, by propagating the geometry of every tensor through one forward pass
(a :class:`~torch.overrides.TorchFunctionMode` sees every operation — modules, functional
calls, ``F.pad``, residual additions — in the order it runs). Along each axis unit ``i``
of a layer sees input pixels ``[offset + i * jump, offset + i * jump + size)``; a conv or
pool with kernel ``k``, stride ``s``, padding ``p`` and dilation ``d`` maps
``(size, jump, offset)`` to ``(size + (k - 1) d jump, jump s, offset - p jump)`` (Araujo
et al., "Computing Receptive Fields of Convolutional Neural Networks", Distill 2019).
Operations that mix all positions (global pooling, linear layers on flattened maps) give
every unit the whole input; so, conservatively, do operations not listed here that change
the spatial size (e.g. interpolation).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode
from torch.utils.weak import WeakTensorKeyDictionary

from ..core.guard import check_inputs, guarded
from ..core.hooks import HookSet
from ..core.layers import find_layer
from ..errors import LayerError
from .feature_maps import as_maps
from .filters import module_of

__all__ = ["ReceptiveField", "Span", "receptive_field"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Span:
    """Along one axis, unit ``i`` sees input pixels ``[offset + i*jump, offset + i*jump + size)``.

    ``jump == 0`` means every unit sees the same pixels (after global pooling)."""

    size: int
    jump: int
    offset: int

    def conv(self, kernel: int, stride: int, padding: int, dilation: int = 1) -> Span:
        """After a convolution or pooling window."""
        return Span(
            self.size + (kernel - 1) * dilation * self.jump,
            self.jump * stride,
            self.offset - padding * self.jump,
        )

    def pad(self, before: int) -> Span:
        """After padding ``before`` units at the start (negative: cropping)."""
        return Span(self.size, self.jump, self.offset - before * self.jump)

    def whole(self, units: int) -> Span:
        """Every output unit sees what all ``units`` input units see together."""
        end = self.offset + (units - 1) * self.jump + self.size
        return Span(end - self.offset, 0, self.offset)

    def union(self, other: Span) -> Span | None:
        """What a unit sees through either of two same-sized inputs (None: grids differ)."""
        if other.jump != self.jump:
            return None
        start = min(self.offset, other.offset)
        end = max(self.offset + self.size, other.offset + other.size)
        return Span(end - start, self.jump, start)

    def interval(self, unit: int, extent: int) -> tuple[int, int]:
        """Pixels ``[start, stop)`` of unit ``unit``, clipped to ``[0, extent)``."""
        start = self.offset + unit * self.jump
        return max(0, start), min(extent, start + self.size)


Geometry = tuple[Span, Span]
_IDENTITY: Geometry = (Span(1, 1, 0), Span(1, 1, 0))
_CONV = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")
_MAX_POOL = ("input", "kernel_size", "stride", "padding", "dilation", "ceil_mode")
_AVG_POOL = ("input", "kernel_size", "stride", "padding", "ceil_mode")
_ADAPTIVE = ("input", "output_size")
_PAD = ("input", "pad", "mode", "value")
_MAX_POOLS = {"max_pool2d", "_max_pool2d", "max_pool2d_with_indices"}
_ADAPTIVE_POOLS = {
    "adaptive_avg_pool2d",
    "adaptive_max_pool2d",
    "_adaptive_max_pool2d",
    "adaptive_max_pool2d_with_indices",
}


def _pair(value: Any) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    values = tuple(value)
    return (
        (int(values[0]), int(values[0])) if len(values) == 1 else (int(values[0]), int(values[1]))
    )


def _bind(
    names: tuple[str, ...], args: tuple[Any, ...], kwargs: Mapping[str, Any]
) -> dict[str, Any]:
    bound = dict(zip(names, args))
    bound.update({k: v for k, v in kwargs.items() if k in names})
    return bound


def _spatial(t: Tensor) -> tuple[int, int]:
    return int(t.shape[-2]), int(t.shape[-1])


def _whole(geometry: Geometry, source: Tensor) -> Geometry:
    h, w = _spatial(source)
    return geometry[0].whole(h), geometry[1].whole(w)


def _windowed(geometry: Geometry, bound: dict[str, Any], kernel: tuple[int, int]) -> Geometry:
    stride = _pair(bound.get("stride") or kernel)
    padding = bound.get("padding", 0)
    dilation = _pair(bound.get("dilation", 1))
    if isinstance(padding, str):  # conv2d's "valid" / "same" (same: the extra pixel after)
        padding = (
            (0, 0)
            if padding == "valid"
            else tuple(d * (k - 1) // 2 for k, d in zip(kernel, dilation))
        )
    pad = _pair(padding)
    return tuple(  # type: ignore[return-value]
        g.conv(k, s, p, d) for g, k, s, p, d in zip(geometry, kernel, stride, pad, dilation)
    )


def _adaptive(geometry: Geometry, source: Tensor, output: Any) -> Geometry | None:
    sizes = _spatial(source)
    wanted = (output, output) if isinstance(output, int) or output is None else tuple(output)
    spans = []
    for span, n, size in zip(geometry, sizes, wanted):
        m = n if size is None else int(size)
        if n % m:
            return None  # uneven bins: no single grid
        spans.append(span.conv(n // m, n // m, 0) if m != n else span)
    return spans[0], spans[1]


def _padded(geometry: Geometry, pads: Sequence[int]) -> Geometry:
    left = int(pads[0]) if len(pads) >= 2 else 0
    top = int(pads[2]) if len(pads) >= 4 else 0
    return geometry[0].pad(top), geometry[1].pad(left)


def _known(
    spans: WeakTensorKeyDictionary, args: tuple[Any, ...], kwargs: Mapping[str, Any]
) -> list[tuple[Tensor, Geometry]]:
    found: list[tuple[Tensor, Geometry]] = []

    def visit(value: Any) -> None:
        if isinstance(value, Tensor):
            if value in spans:
                found.append((value, spans[value]))
        elif isinstance(value, (list, tuple)):
            for item in value:
                visit(item)

    visit(args)
    visit(tuple(kwargs.values()))
    return found


def _merged(known: list[tuple[Tensor, Geometry]], output: Tensor) -> Geometry:
    """An operation of unknown kind: elementwise if it keeps the spatial size, else global."""
    result: Geometry | None = None
    for tensor, seen in known:
        same = tensor.dim() >= 2 and _spatial(tensor) == _spatial(output)
        geometry = seen if same else _whole(seen, tensor)
        if result is None:
            result = geometry
            continue
        rows, cols = result[0].union(geometry[0]), result[1].union(geometry[1])
        if rows is None or cols is None:
            rows = result[0].whole(1).union(geometry[0].whole(1))
            cols = result[1].whole(1).union(geometry[1].whole(1))
        assert rows is not None and cols is not None  # jump 0 on both sides
        result = rows, cols
    assert result is not None
    return result


def _propagate(
    name: str,
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    known: list[tuple[Tensor, Geometry]],
    output: Tensor,
) -> Geometry:
    first = args[0] if args else kwargs.get("input")
    main = next((g for t, g in known if t is first), None)
    if main is not None and isinstance(first, Tensor) and first.dim() >= 3:
        if name == "conv2d":
            bound = _bind(_CONV, args, kwargs)
            return _windowed(main, bound, _pair(tuple(bound["weight"].shape[-2:])))
        if name in _MAX_POOLS or name == "avg_pool2d":
            bound = _bind(_MAX_POOL if name in _MAX_POOLS else _AVG_POOL, args, kwargs)
            return _windowed(main, bound, _pair(bound["kernel_size"]))
        if name in _ADAPTIVE_POOLS:
            adaptive = _adaptive(main, first, _bind(_ADAPTIVE, args, kwargs).get("output_size"))
            return adaptive if adaptive is not None else _whole(main, first)
        if name == "pad":
            return _padded(main, _bind(_PAD, args, kwargs)["pad"])
    return _merged(known, output)


class _GeometryMode(TorchFunctionMode):
    """Propagates each tensor's receptive-field geometry through every torch call."""

    def __init__(self) -> None:
        super().__init__()
        self.spans = WeakTensorKeyDictionary()

    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: Mapping[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        output = func(*args, **kwargs)
        known = _known(self.spans, args, kwargs)
        if not known:
            return output
        name = getattr(func, "__name__", "")
        outputs = (
            [output]
            if isinstance(output, Tensor)
            else list(output)
            if isinstance(output, (tuple, list))
            else []
        )
        for result in outputs:
            if isinstance(result, Tensor) and result.dim() >= 2:
                self.spans[result] = _propagate(name, args, kwargs, known, result)
        return output


@dataclass(frozen=True)
class ReceptiveField:
    """Which input pixels each unit of a layer sees.

    Attributes
    ----------
    layer : str
        The layer's dotted name.
    rows, cols : Span
        The geometry along each axis (see :class:`Span`).
    input_size : tuple of int
        ``(H, W)`` of the input it was computed for.
    map_size : tuple of int
        ``(h, w)`` of the layer's output.
    """

    layer: str
    rows: Span
    cols: Span
    input_size: tuple[int, int]
    map_size: tuple[int, int]

    @property
    def size(self) -> tuple[int, int]:
        """Unclipped ``(height, width)`` of one unit's field."""
        return self.rows.size, self.cols.size

    @property
    def stride(self) -> tuple[int, int]:
        """Input pixels between neighbouring units (the *jump*); 0 after global pooling."""
        return self.rows.jump, self.cols.jump

    @property
    def start(self) -> tuple[int, int]:
        """First input pixel of unit ``(0, 0)`` (negative where it reaches into padding)."""
        return self.rows.offset, self.cols.offset

    def box(self, row: int, col: int) -> tuple[int, int, int, int]:
        """``(top, left, bottom, right)`` of unit ``(row, col)``, clipped to the image;
        bottom and right are exclusive."""
        top, bottom = self.rows.interval(row, self.input_size[0])
        left, right = self.cols.interval(col, self.input_size[1])
        return top, left, bottom, right


def _trace_geometry(
    model: nn.Module, layer: str, example: Tensor
) -> tuple[Geometry | None, Tensor]:
    """One forward on ``example`` (stopped after ``layer``); the layer's geometry and output."""
    module = find_layer(model, layer)
    mode = _GeometryMode()
    seen: list[tuple[Geometry | None, Tensor]] = []

    class Stop(Exception):  # noqa: N818 - control flow, not an error
        pass

    def hook(_: nn.Module, __: Any, output: Any) -> None:
        if isinstance(output, Tensor):
            seen.append((mode.spans.get(output), output.detach()))
        raise Stop

    x = example[:1].detach().clone()
    with HookSet() as hooks, torch.inference_mode():
        hooks.add(module.register_forward_hook(hook))
        with mode:
            mode.spans[x] = _IDENTITY
            with contextlib.suppress(Stop):
                model(x)
    if not seen:
        raise LayerError(f"layer {layer!r} did not run in the forward pass (or is not a tensor)")
    return seen[0]


def receptive_field(model: Any, layer: str, example: Tensor) -> ReceptiveField:
    """The receptive field of ``layer``'s units for inputs shaped like ``example``.

    Parameters
    ----------
    model : nn.Module or LoadedModel
        In eval mode; left untouched.
    layer : str
        Dotted module name; its output ``(N, C, h, w)`` (or ``(N, C)``: the whole image).
    example : Tensor
        ``(N, C, H, W)``; only its first row is run, once.

    Returns
    -------
    ReceptiveField
    """
    module = module_of(model)
    x = check_inputs(example, module)
    with guarded(module, [x.device]):
        geometry, output = _trace_geometry(module, layer, x)
    maps = as_maps(output, layer)
    height, width = _spatial(x)
    if geometry is None or output.dim() != 4:
        if geometry is None:
            log.warning("could not trace the receptive field of %r; using the whole image", layer)
        geometry = (Span(height, 0, 0), Span(width, 0, 0)) if geometry is None else geometry
        if output.dim() != 4:
            geometry = (geometry[0].whole(height), geometry[1].whole(width))
    return ReceptiveField(layer, geometry[0], geometry[1], (height, width), _spatial(maps))

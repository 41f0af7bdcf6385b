"""Top-activating dataset examples: for each channel, the images that excite it most,
and the patch of each image its strongest unit sees.

A channel's score on an image is its strongest unit (the maximum over positions). The
dataset is streamed in chunks and only a running top-k per channel is kept — never all
activations — merged chunk by chunk with a stable sort, so ties go to the earlier image
(and, within an image, to the first position in row-major order).

Receptive fields are computed exactly, by propagating the geometry of every tensor
through one forward pass (a :class:`~torch.overrides.TorchFunctionMode` sees every
operation — modules, functional calls, ``F.pad``, residual additions — in the order it
runs). Along each axis unit ``i`` of a layer sees input pixels
``[offset + i * jump, offset + i * jump + size)``; a conv or pool with kernel ``k``,
stride ``s``, padding ``p`` and dilation ``d`` maps ``(size, jump, offset)`` to
``(size + (k - 1) d jump, jump s, offset - p jump)`` (Araujo et al., "Computing
Receptive Fields of Convolutional Neural Networks", Distill 2019). Operations that mix
all positions (global pooling, linear layers on flattened maps) give every unit the
whole input; so, conservatively, do operations not listed here that change the spatial
size (e.g. interpolation).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode
from torch.utils.weak import WeakTensorKeyDictionary

from ..core.budget import Budget, Progress
from ..core.guard import check_inputs, guarded, model_device
from ..core.hooks import HookSet
from ..core.layers import find_layer
from ..errors import InvalidInputError, InvalidOptionError, LayerError
from .feature_maps import as_maps, capture_chunks, check_channels, default_rows
from .filters import module_of

__all__ = [
    "ReceptiveField",
    "Span",
    "TopExamples",
    "receptive_field",
    "top_examples",
]

log = logging.getLogger(__name__)

BLOCK_ROWS = 1024
"""Rows taken from a tensor or dataset at a time (then run in chunks that fit in memory)."""


# ---------------------------------------------------------------------------------------
# Receptive fields


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

    def to_dict(self) -> dict[str, Any]:
        return {
            "layer": self.layer,
            "size": list(self.size),
            "stride": list(self.stride),
            "start": list(self.start),
            "input_size": list(self.input_size),
            "map_size": list(self.map_size),
        }


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


# ---------------------------------------------------------------------------------------
# Top-k over a dataset


@dataclass(frozen=True, eq=False)
class TopExamples:
    """The most strongly activating images of each channel of a layer.

    Attributes
    ----------
    layer : str
        The layer's dotted name.
    channels : Tensor
        ``(K,)`` int64 layer channels, one per row of the other fields. These and the
        following tensors are small and live on the CPU.
    values : Tensor
        ``(K, k)`` the strongest unit's activation in each hit, descending (the layer's
        dtype; NaN activations rank as ``-inf``).
    indices : Tensor
        ``(K, k)`` int64 position of each hit's image in the dataset.
    locations : Tensor
        ``(K, k, 2)`` int64 ``(row, col)`` of the strongest unit in the layer's map.
    boxes : Tensor
        ``(K, k, 4)`` int64 ``(top, left, bottom, right)`` of that unit's receptive field
        in the input, clipped to the image (bottom and right exclusive).
    receptive_field : ReceptiveField
        The layer's receptive-field geometry.
    images : Mapping[int, Tensor]
        The inputs ``(C, H, W)`` of the hits, by dataset index, on their own device.
    count : int
        Images streamed.
    layer_channels : int
        Channels of the layer.
    """

    layer: str
    channels: Tensor
    values: Tensor
    indices: Tensor
    locations: Tensor
    boxes: Tensor
    receptive_field: ReceptiveField
    images: Mapping[int, Tensor]
    count: int
    layer_channels: int
    settings: Mapping[str, Any] = field(default_factory=dict)

    @property
    def k(self) -> int:
        """Examples per channel (``min(k, count)``)."""
        return int(self.values.shape[1])

    def crop(self, row: int, rank: int) -> Tensor:
        """The input patch ``(C, h, w)`` the strongest unit of hit ``rank`` of channel row
        ``row`` sees (clipped to the image)."""
        top, left, bottom, right = (int(v) for v in self.boxes[row, rank])
        image = self.images[int(self.indices[row, rank])]
        return image[:, top:bottom, left:right]

    def crops(self) -> list[list[Tensor]]:
        """Per channel row, the ``k`` input patches (sizes differ where clipped)."""
        return [[self.crop(r, j) for j in range(self.k)] for r in range(len(self.channels))]

    def to_dict(self) -> dict[str, Any]:
        """The hits per channel as plain JSON-ready values."""
        return {
            "layer": self.layer,
            "images_seen": self.count,
            "layer_channels": self.layer_channels,
            "k": self.k,
            "receptive_field": self.receptive_field.to_dict(),
            "channels": [
                {
                    "channel": int(c),
                    "hits": [
                        {
                            "image": int(self.indices[r, j]),
                            "value": round(float(self.values[r, j]), 8),
                            "location": [int(v) for v in self.locations[r, j]],
                            "box": [int(v) for v in self.boxes[r, j]],
                        }
                        for j in range(self.k)
                    ],
                }
                for r, c in enumerate(self.channels)
            ],
            "settings": dict(self.settings),
        }


class _Running:
    """The running top-k per channel, and the inputs of the current hits."""

    def __init__(self, k: int, channels: Sequence[int] | None, layer: str) -> None:
        self.k = k
        self.wanted = channels
        self.layer = layer
        self.channels: Tensor | None = None
        self.layer_channels = 0
        self.width = 0
        self.values = self.index = self.where = torch.empty(0)
        self.images: dict[int, Tensor] = {}

    def merge(self, first: int, x: Tensor, maps: Tensor) -> None:
        if self.channels is None:
            self._start(maps)
        assert self.channels is not None
        maps = maps[:, self.channels.to(maps.device)]
        values, where = maps.flatten(2).max(dim=2)  # first maximal position on ties
        values = torch.nan_to_num(values, nan=float("-inf"))
        index = torch.arange(first, first + len(maps), device=maps.device)[:, None]
        # Earlier images come first, and a stable sort keeps them ahead on ties
        # (torch.topk leaves the order of ties unspecified).
        values = torch.cat([self.values, values])
        order = torch.sort(values, dim=0, descending=True, stable=True).indices[: self.k]
        self.values = values.gather(0, order)
        self.index = torch.cat([self.index, index.expand_as(where)]).gather(0, order)
        self.where = torch.cat([self.where, where]).gather(0, order)
        self._keep_images(first, x)

    def _start(self, maps: Tensor) -> None:
        self.layer_channels = int(maps.shape[1])
        self.width = int(maps.shape[3])
        if self.wanted is None:
            self.channels = torch.arange(self.layer_channels)
        else:
            self.channels = check_channels(self.wanted, self.layer_channels, self.layer)
        count, device = len(self.channels), maps.device
        self.values = torch.empty(0, count, dtype=maps.dtype, device=device)
        self.index = torch.empty(0, count, dtype=torch.int64, device=device)
        self.where = torch.empty(0, count, dtype=torch.int64, device=device)

    def _keep_images(self, first: int, x: Tensor) -> None:
        needed = set(self.index.unique().tolist())
        for i in range(first, first + len(x)):
            if i in needed:
                self.images[i] = x[i - first].clone()
        for i in [i for i in self.images if i not in needed]:
            del self.images[i]


def _as_batch(item: Any) -> Tensor:
    if isinstance(item, Tensor):
        return item
    if isinstance(item, (tuple, list)) and item and isinstance(item[0], Tensor):
        return item[0]  # (inputs, labels) from a DataLoader
    raise InvalidInputError(
        f"a dataset batch must be a tensor (N, C, H, W) or a tuple whose first item is one, "
        f"got {type(item).__name__}"
    )


def _blocks(data: Any, model: nn.Module) -> tuple[int | None, Iterator[Tensor]]:
    """The dataset as ``(rows or None, iterator of (n, C, H, W) blocks)``."""
    from ..data.fashion_mnist import FashionMNIST, load_fashion_mnist

    if isinstance(data, str):
        if data != "fashion-mnist":
            raise InvalidOptionError(
                f"unknown dataset {data!r}; pass 'fashion-mnist' (its test set), a tensor "
                "(N, C, H, W) or an iterable of batches"
            )
        data = load_fashion_mnist("test")
    if isinstance(data, FashionMNIST):
        param = next(iter([*model.parameters(), *model.buffers()]), None)
        dataset = data

        def fashion() -> Iterator[Tensor]:
            for a in range(0, len(dataset), BLOCK_ROWS):
                x = dataset.inputs(a, a + BLOCK_ROWS)
                yield x if param is None else x.to(device=param.device, dtype=param.dtype)

        return len(data), fashion()
    if isinstance(data, Tensor):
        if data.dim() != 4:
            check_inputs(data, model)  # raises with the shape and the fix
        tensor = data
        return len(data), (tensor[a : a + BLOCK_ROWS] for a in range(0, len(tensor), BLOCK_ROWS))
    if isinstance(data, Iterable):
        return None, (_as_batch(item) for item in data)
    raise InvalidInputError(
        f"cannot stream a {type(data).__name__}; pass a tensor (N, C, H, W), an iterable of "
        "batches, a FashionMNIST split or 'fashion-mnist'"
    )


def _check_k(k: int) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise InvalidOptionError(f"k must be a positive integer, got {k!r}")


def top_examples(
    model: Any,
    images_or_dataset: Any,
    layer: str,
    *,
    channels: Sequence[int] | None = None,
    k: int = 9,
    batch_size: int | None = None,
    progress: Progress | None = None,
) -> TopExamples:
    """Find, for each channel of ``layer``, the ``k`` inputs whose strongest unit is
    strongest, and the receptive field of that unit.

    Parameters
    ----------
    model : nn.Module or LoadedModel
        In eval mode; left untouched.
    images_or_dataset : Tensor, iterable, FashionMNIST or "fashion-mnist"
        A tensor ``(N, C, H, W)``; an iterable of batches (tensors, or tuples whose first
        item is the tensor, as a ``DataLoader`` gives); a
        :class:`~seethrough.data.FashionMNIST` split or ``"fashion-mnist"`` (its test
        set, normalised for the reference CNN). Image indices count from 0 across batches.
    layer : str
        Dotted module name; its output must be ``(N, C, h, w)`` or ``(N, C)``.
    channels : sequence of int, optional
        Which channels (default: all).
    k : int
        Examples per channel (fewer if the dataset is smaller).
    batch_size : int, optional
        Most images per forward pass (default: adapt to memory).
    progress : callable, optional
        ``progress(images_done, images_total)`` after each chunk (total 0 when the
        iterable's length is unknown).

    Returns
    -------
    TopExamples
        Memory: the top-k per channel and the inputs of the hits (at most ``k`` per
        channel), never the activations of the whole dataset.

    Raises
    ------
    LayerError, InvalidOptionError, InvalidInputError
        Unknown layer, bad ``k`` or channel, or batches of the wrong shape.
    """
    module = module_of(model)
    _check_k(k)
    find_layer(module, layer)
    total, blocks = _blocks(images_or_dataset, module)
    device = model_device(module)
    running = _Running(k, channels, layer)
    stream = _Stream(module, layer, running, total, progress)
    with guarded(module, [device] if device is not None else None):
        for block in blocks:
            stream.add(check_inputs(block, module), batch_size)
    if stream.field is None or running.channels is None:
        raise InvalidInputError("the dataset is empty: there are no images to rank")
    return _result(running, stream.field, stream.seen, layer, k, batch_size)


class _Stream:
    """Feeds blocks of images through the model into the running top-k."""

    def __init__(
        self,
        model: nn.Module,
        layer: str,
        running: _Running,
        total: int | None,
        progress: Progress | None,
    ) -> None:
        self.model, self.layer, self.running = model, layer, running
        self.total, self.progress = total or 0, progress
        self.seen = 0
        self.shape: tuple[int, ...] | None = None
        self.budget: Budget | None = None
        self.field: ReceptiveField | None = None

    def add(self, x: Tensor, batch_size: int | None) -> None:
        if self.shape is None:
            self.shape = tuple(x.shape[1:])
            self.budget = Budget(rows=default_rows(x, batch_size), device=x.device)
            self.field = receptive_field(self.model, self.layer, x[:1])
        elif tuple(x.shape[1:]) != self.shape:
            raise InvalidInputError(
                f"batch of shape {tuple(x.shape)} after batches of {self.shape}; every image "
                "must have the same shape"
            )
        assert self.budget is not None
        start = self.seen

        def consume(offset: int, maps: Tensor) -> None:
            self.running.merge(start + offset, x[offset : offset + len(maps)], maps)
            if self.progress is not None:
                self.progress(start + offset + len(maps), self.total)

        capture_chunks(
            self.model,
            self.layer,
            lambda a, b: x[a:b],
            len(x),
            self.budget,
            consume,
            probe=start == 0,
        )
        self.seen += len(x)


def _result(
    running: _Running, field_: ReceptiveField, seen: int, layer: str, k: int, batch_size: int | None
) -> TopExamples:
    assert running.channels is not None
    where = running.where.T.cpu()
    locations = torch.stack([where // running.width, where % running.width], dim=-1)
    boxes = torch.tensor(
        [[field_.box(int(r), int(c)) for r, c in row] for row in locations.tolist()],
        dtype=torch.int64,
    ).reshape(*locations.shape[:2], 4)
    return TopExamples(
        layer=layer,
        channels=running.channels.clone(),
        values=running.values.T.cpu().contiguous(),
        indices=running.index.T.cpu().contiguous(),
        locations=locations,
        boxes=boxes,
        receptive_field=field_,
        images=MappingProxyType(dict(running.images)),
        count=seen,
        layer_channels=running.layer_channels,
        settings=MappingProxyType({"k": k, "batch_size": batch_size}),
    )

"""Feature maps: what one layer computes for given images, channel by channel.

The layer's output is captured with :class:`~seethrough.core.hooks.LayerCapture`, which
hands a clone downstream, so an in-place ReLU after the layer cannot overwrite the
captured values: a conv followed by ``ReLU(inplace=True)`` gives the conv's own,
pre-ReLU output. Forward passes run under ``torch.inference_mode`` in chunks that fit
in memory, and stop as soon as the layer has run.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ..core.budget import CPU_ROWS, Budget
from ..core.guard import check_inputs, guarded
from ..core.hooks import HookSet, LayerCapture
from ..core.layers import find_layer
from ..errors import InvalidOptionError, LayerError
from .filters import module_of

__all__ = [
    "ORDERS",
    "FeatureMaps",
    "as_maps",
    "capture_chunks",
    "check_channels",
    "default_rows",
    "feature_maps",
]

ORDERS = ("mean", "max", "index")
"""How channels are sorted: by mean or by max activation (descending), or by index."""

ChannelsLike = None | str | Sequence[int]
MAX_CPU_ROWS = 1024


@dataclass(frozen=True, eq=False)
class FeatureMaps:
    """The activations of one layer for a batch of inputs.

    Attributes
    ----------
    layer : str
        The layer's dotted name.
    activations : Tensor
        ``(N, K, h, w)`` the chosen channels' raw outputs (a layer with output
        ``(N, C)`` gives ``h = w = 1``), on the inputs' device.
    channels : Tensor
        ``(K,)`` int64: the layer channel of each column of ``activations``.
    mean, max : Tensor
        ``(K,)`` float64: each chosen channel's mean and max over images and positions.
    inputs : Tensor
        ``(N, C, H, W)`` the inputs (a detached copy).
    layer_channels : int
        Channels of the layer output ``C``.
    order : str
        How the channels are sorted: one of :data:`ORDERS`, or ``"given"`` for an explicit
        list, which keeps its order.
    selection : str
        ``"all"``, ``"top"`` (the ``K`` highest by ``order``) or ``"list"``.
    """

    layer: str
    activations: Tensor
    channels: Tensor
    mean: Tensor
    max: Tensor
    inputs: Tensor
    layer_channels: int
    order: str
    selection: str
    settings: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.activations)

    @property
    def map_size(self) -> tuple[int, int]:
        """``(h, w)`` of the layer's maps."""
        return int(self.activations.shape[2]), int(self.activations.shape[3])


def default_rows(inputs: Tensor, batch_size: int | None) -> int | None:
    """Rows per pass: ``batch_size`` if given; on the CPU, as many pixels per pass as
    :data:`~seethrough.core.budget.CPU_ROWS` images of 224 × 224 (small images in small
    chunks run several times slower per image: 1,024 Fashion-MNIST images take 6× longer
    in chunks of 16 than of 256); elsewhere the budget adapts."""
    if batch_size is not None or inputs.device.type != "cpu":
        return batch_size
    pixels = max(1, int(inputs.shape[-2]) * int(inputs.shape[-1]))
    return max(CPU_ROWS, min(MAX_CPU_ROWS, CPU_ROWS * 224 * 224 // pixels))


class _Stop(Exception):  # noqa: N818 - control flow, not an error
    """Raised by a hook once the layer has run: the rest of the forward is not needed."""


def as_maps(activation: Tensor, layer: str) -> Tensor:
    """A layer output as ``(N, C, h, w)``; ``(N, C)`` becomes ``(N, C, 1, 1)``."""
    if activation.dim() == 4:
        return activation
    if activation.dim() == 2:
        return activation[:, :, None, None]
    raise LayerError(
        f"layer {layer!r} outputs shape {tuple(activation.shape)}; feature maps need "
        "(N, C, h, w) or (N, C) — choose a conv, pooling or linear layer"
    )


def capture_chunks(
    model: nn.Module,
    layer: str,
    rows: Callable[[int, int], Tensor],
    total: int,
    budget: Budget,
    consume: Callable[[int, Tensor], None],
    *,
    probe: bool = True,
) -> None:
    """Run ``model`` on rows ``0:total`` in chunks; ``consume(start, maps)`` gets each
    chunk's layer output ``(n, C, h, w)`` (an inference tensor: read it, or copy it, but
    do not modify it in place).

    The caller holds :func:`~seethrough.core.guard.guarded`. Each forward stops once
    the layer has run — after one full forward on one row (``probe``), which refuses a
    layer that runs more than once.
    """
    module = find_layer(model, layer)

    def stop(*_: object) -> None:
        raise _Stop

    def step(start: int, stop_row: int) -> None:
        x = budget.arrange(model, rows(start, stop_row))
        with HookSet() as hooks:
            capture = LayerCapture(module, layer, cut=False).attach(hooks)
            hooks.add(module.register_forward_hook(stop))
            with torch.inference_mode(), contextlib.suppress(_Stop):
                model(x)
        if capture.activation is None:
            raise LayerError(f"layer {layer!r} did not run in the forward pass")
        consume(start, as_maps(capture.activation, layer).contiguous())

    if probe and total > 0:
        _check_runs_once(model, module, layer, rows(0, 1))
    budget.run(total, step)


def _check_runs_once(model: nn.Module, module: nn.Module, layer: str, row: Tensor) -> None:
    """One full forward on one row: a module reused in the forward pass is refused (the
    passes that follow stop at its first call and could not tell)."""
    with HookSet() as hooks, torch.inference_mode():
        capture = LayerCapture(module, layer, cut=False).attach(hooks)
        model(row)
    if capture.activation is None:
        raise LayerError(f"layer {layer!r} did not run in the forward pass")


def check_channels(channels: Sequence[int], count: int, layer: str) -> Tensor:
    """Validate explicit channel indices against a layer of ``count`` channels."""
    if isinstance(channels, (str, bytes)) or not isinstance(channels, Sequence):
        raise InvalidOptionError(
            f"channels must be None, 'top' or a list of channel indices, got {channels!r}"
        )
    if not channels:
        raise InvalidOptionError("channels is empty; name at least one channel")
    for c in channels:
        if isinstance(c, bool) or not isinstance(c, int):
            raise InvalidOptionError(f"channel indices must be integers, got {c!r}")
        if not 0 <= c < count:
            raise InvalidOptionError(
                f"channel {c} is out of range: layer {layer!r} has {count} channels (0–{count - 1})"
            )
    return torch.tensor(list(channels), dtype=torch.int64)


def _check_options(channels: ChannelsLike, k: int, order: str) -> None:
    if order not in ORDERS:
        raise InvalidOptionError(f"unknown order {order!r} (valid: {', '.join(ORDERS)})")
    if isinstance(channels, str) and channels != "top":
        raise InvalidOptionError(
            f"channels must be None, 'top' or a list of channel indices, got {channels!r}"
        )
    if channels == "top":
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise InvalidOptionError(f"k must be a positive integer, got {k!r}")
        if order == "index":
            raise InvalidOptionError(
                "channels='top' ranks channels by order='mean' or 'max', not 'index'"
            )


def _rank(stats: dict[str, Tensor], order: str) -> Tensor:
    """Channel indices sorted by ``order`` (descending statistic; ties by index)."""
    if order == "index":
        return torch.arange(len(stats["mean"]))
    return torch.sort(stats[order].cpu(), descending=True, stable=True).indices


def feature_maps(
    model: Any,
    inputs: Tensor,
    layer: str,
    *,
    channels: ChannelsLike = None,
    k: int = 16,
    order: str = "mean",
    batch_size: int | None = None,
) -> FeatureMaps:
    """Capture the output of ``layer`` for ``inputs``, channel by channel.

    Parameters
    ----------
    model : nn.Module or LoadedModel
        In eval mode; left untouched.
    inputs : Tensor
        ``(N, C, H, W)`` on the model's device and dtype.
    layer : str
        Dotted module name (``seethrough layers`` lists them); its output must be
        ``(N, C, h, w)`` or ``(N, C)``, and it must run once per forward pass.
    channels : None, "top" or sequence of int
        ``None``: every channel, sorted by ``order``; ``"top"``: the ``k`` channels with
        the highest ``order`` statistic; a list: those channels, in the order given.
    k : int
        How many channels ``"top"`` keeps.
    order : {"mean", "max", "index"}
        Sort by each channel's mean or max over images and positions (descending,
        ties by index), or by channel index.
    batch_size : int, optional
        Most images per forward pass (default: adapt to memory).

    Returns
    -------
    FeatureMaps

    Raises
    ------
    LayerError
        Unknown layer (with suggestions), or an output that is not a map.
    InvalidOptionError
        Bad ``channels``, ``k`` or ``order``, or a channel out of range.
    """
    module = module_of(model)
    x = check_inputs(inputs, module)
    _check_options(channels, k, order)
    find_layer(module, layer)
    parts: list[Tensor] = []
    chosen: list[Tensor | None] = [None]
    count = [0]

    def keep(start: int, maps: Tensor) -> None:
        count[0] = maps.shape[1]
        if isinstance(channels, Sequence) and not isinstance(channels, str):
            picked = chosen[0]
            if picked is None:
                picked = chosen[0] = check_channels(channels, maps.shape[1], layer)
            maps = maps[:, picked.to(maps.device)]
        parts.append(maps)

    with guarded(module, [x.device]):
        budget = Budget(rows=default_rows(x, batch_size), device=x.device)
        capture_chunks(module, layer, lambda a, b: x[a:b], len(x), budget, keep)
    maps = torch.cat(parts)
    stats = {"mean": maps.double().mean(dim=(0, 2, 3)), "max": maps.double().amax(dim=(0, 2, 3))}
    if chosen[0] is not None:
        index, picked, selection = chosen[0], torch.arange(maps.shape[1]), "list"
    else:
        picked = _rank(stats, order)
        selection = "all" if channels is None else "top"
        if selection == "top":
            picked = picked[:k]
        index = picked
    device_pick = picked.to(maps.device)
    return FeatureMaps(
        layer=layer,
        activations=maps[:, device_pick],
        channels=index.clone(),
        mean=stats["mean"][device_pick],
        max=stats["max"][device_pick],
        inputs=x,
        layer_channels=count[0],
        order="given" if selection == "list" else order,
        selection=selection,
        settings={"k": k, "batch_size": batch_size},
    )

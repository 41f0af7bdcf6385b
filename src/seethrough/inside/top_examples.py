"""Top-activating dataset examples: for each channel, the images that excite it most,
and the patch of each image its strongest unit sees.

A channel's score on an image is its strongest unit (the maximum over positions). The
dataset is streamed in chunks and only a running top-k per channel is kept — never all
activations — merged chunk by chunk with a stable sort, so ties go to the earlier image
(and, within an image, to the first position in row-major order).

Each hit comes with the patch its unit sees (:mod:`~seethrough.inside.receptive_field`).

A dataset on disk (a folder of class subfolders, a CSV/Parquet list, Fashion-MNIST) is read
through :func:`seethrough.core.datasets.model_source` and streamed a batch at a time, so the
memory is one batch plus the hits, whatever the dataset's size; unreadable files are
skipped and counted (``TopExamples.skipped``), never raised.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import torch
from torch import Tensor, nn

from ..core.budget import Budget, Progress
from ..core.datasets import model_source, stream
from ..core.guard import check_inputs, guarded, model_device
from ..core.layers import find_layer
from ..data.sources import ImageSource
from ..errors import InvalidInputError, InvalidOptionError
from .feature_maps import capture_chunks, check_channels, default_rows
from .filters import module_of
from .receptive_field import ReceptiveField, receptive_field

__all__ = ["TopExamples", "top_examples"]

logger = logging.getLogger(__name__)

BLOCK_ROWS = 1024
"""Rows taken from a tensor or dataset at a time (then run in chunks that fit in memory)."""

SOURCE_BLOCK = 64
"""Images decoded at a time from an image source when ``batch_size`` is not given (a
block of decoded photos is the job's memory, so it is smaller than :data:`BLOCK_ROWS`)."""

_Block = tuple[Tensor, Tensor | None, Sequence[str] | None]
"""``(inputs (n, C, H, W), source positions (n,) or None, paths or None)``; ``None``
positions count on from the images already streamed."""


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
        ``(K, k)`` int64 position of each hit's image in the dataset (for an image source:
        its position in the source, unreadable images included in the count).
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
        Images streamed (ranked; an image source's unreadable images are not counted).
    layer_channels : int
        Channels of the layer.
    settings : Mapping[str, Any]
        ``k`` and ``batch_size`` as given.
    paths : tuple of tuple of str
        ``(K, k)``: the path of each hit's image as its source lists it (a file path,
        ``"fashion-mnist:test#123"``); ``""`` for tensors and iterables of batches.
    skipped : int
        Images of an image source that could not be read (each logged at debug level by
        the source, and counted in one warning); 0 for the other inputs.
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
    paths: tuple[tuple[str, ...], ...] = ()
    skipped: int = 0

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
        self.paths: dict[int, str] = {}

    def merge(self, positions: Tensor, x: Tensor, maps: Tensor, paths: Sequence[str]) -> None:
        """Merge ``maps`` of images ``x`` at dataset ``positions`` (ascending, after every
        position merged before) into the running top-k."""
        if self.channels is None:
            self._start(maps)
        assert self.channels is not None
        maps = maps[:, self.channels.to(maps.device)]
        values, where = maps.flatten(2).max(dim=2)  # first maximal position on ties
        values = torch.nan_to_num(values, nan=float("-inf"))
        index = positions.to(maps.device)[:, None]
        # Earlier images come first, and a stable sort keeps them ahead on ties
        # (torch.topk leaves the order of ties unspecified).
        values = torch.cat([self.values, values])
        order = torch.sort(values, dim=0, descending=True, stable=True).indices[: self.k]
        self.values = values.gather(0, order)
        self.index = torch.cat([self.index, index.expand_as(where)]).gather(0, order)
        self.where = torch.cat([self.where, where]).gather(0, order)
        self._keep_images(positions.tolist(), x, paths)

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

    def _keep_images(self, positions: list[int], x: Tensor, paths: Sequence[str]) -> None:
        needed = set(self.index.unique().tolist())
        for j, i in enumerate(positions):
            if i in needed:
                self.images[i] = x[j].clone()
                self.paths[i] = paths[j] if paths else ""
        for i in [i for i in self.images if i not in needed]:
            del self.images[i]
            del self.paths[i]


def _as_batch(item: Any) -> Tensor:
    if isinstance(item, Tensor):
        return item
    if isinstance(item, (tuple, list)) and item and isinstance(item[0], Tensor):
        return item[0]  # (inputs, labels) from a DataLoader
    raise InvalidInputError(
        f"a dataset batch must be a tensor (N, C, H, W) or a tuple whose first item is one, "
        f"got {type(item).__name__}"
    )


def _open_spec(model: Any, data: str | os.PathLike[str]) -> Any:
    """A dataset named by a string: ``"fashion-mnist"`` as before (its test set, as a
    :class:`~seethrough.data.FashionMNIST`), anything else through :func:`model_source`
    (which needs a ``LoadedModel`` — its preprocessing — unless it is Fashion-MNIST)."""
    from ..data.fashion_mnist import load_fashion_mnist

    if data == "fashion-mnist":
        return load_fashion_mnist("test")
    spec = os.fspath(data)
    if isinstance(model, nn.Module) and not spec.strip().lower().startswith("fashion-mnist"):
        raise InvalidOptionError(
            f"unknown dataset {spec!r} for a plain module: a folder or list file needs the "
            "model's preprocessing; pass a LoadedModel (seethrough.load_model(...)), or an "
            "ImageSource of model inputs (model_source(model, data, transform=...)), a tensor "
            "(N, C, H, W), an iterable of batches or 'fashion-mnist'"
        )
    return model_source(model, spec).source


class _SourceBlocks:
    """An image source in blocks of model inputs on the model's device and dtype; counts
    the unreadable images (never raised)."""

    def __init__(self, source: ImageSource, rows: int, num_workers: int, param: Any) -> None:
        self.source, self.rows, self.num_workers, self.param = source, rows, num_workers, param
        self.skipped = 0
        self.first_error = ""

    def __iter__(self) -> Iterator[_Block]:
        for batch in stream(self.source, self.rows, num_workers=self.num_workers):
            if batch.failed:
                self.skipped += len(batch.failed)
                bad = batch.failed[0]
                self.first_error = self.first_error or f"{bad.path}: {bad.error}"
            if len(batch):
                x = batch.inputs
                if self.param is not None:
                    x = x.to(device=self.param.device, dtype=self.param.dtype)
                yield x, batch.indices, batch.paths


def _blocks(
    data: Any, model: nn.Module, rows: int, num_workers: int
) -> tuple[int | None, Iterable[_Block]]:
    """The dataset as ``(images or None, blocks)``."""
    from ..data.fashion_mnist import FashionMNIST

    param = next(iter([*model.parameters(), *model.buffers()]), None)
    if isinstance(data, ImageSource):
        return len(data), _SourceBlocks(data, rows, num_workers, param)
    if isinstance(data, FashionMNIST):
        dataset = data

        def fashion() -> Iterator[_Block]:
            for a in range(0, len(dataset), BLOCK_ROWS):
                x = dataset.inputs(a, a + BLOCK_ROWS)
                x = x if param is None else x.to(device=param.device, dtype=param.dtype)
                names = [f"fashion-mnist:{dataset.split}#{i}" for i in range(a, a + len(x))]
                yield x, None, names

        return len(data), fashion()
    if isinstance(data, Tensor):
        if data.dim() != 4:
            check_inputs(data, model)  # raises with the shape and the fix
        tensor = data
        return len(data), (
            (tensor[a : a + BLOCK_ROWS], None, None) for a in range(0, len(tensor), BLOCK_ROWS)
        )
    if isinstance(data, Iterable):
        return None, ((_as_batch(item), None, None) for item in data)
    raise InvalidInputError(
        f"cannot stream a {type(data).__name__}; pass a tensor (N, C, H, W), an iterable of "
        "batches, an ImageSource, a FashionMNIST split, 'fashion-mnist', or (with a "
        "LoadedModel) a folder or list file"
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
    num_workers: int = 0,
) -> TopExamples:
    """Find, for each channel of ``layer``, the ``k`` inputs whose strongest unit is
    strongest, and the receptive field of that unit.

    Parameters
    ----------
    model : nn.Module or LoadedModel
        In eval mode; left untouched.
    images_or_dataset : Tensor, iterable, ImageSource, FashionMNIST, str or path
        A tensor ``(N, C, H, W)``; an iterable of batches (tensors, or tuples whose first
        item is the tensor, as a ``DataLoader`` gives); a
        :class:`~seethrough.data.FashionMNIST` split or ``"fashion-mnist"`` (its test
        set, normalised for the reference CNN). Image indices count from 0 across batches.
        Or a dataset read a batch at a time: an :class:`~seethrough.data.ImageSource` of
        model inputs (:func:`~seethrough.core.datasets.model_source`), or — with a
        ``LoadedModel``, whose preprocessing makes the inputs — a folder of images (class
        subfolders or flat), a ``.csv``/``.parquet`` list, or ``"fashion-mnist:train"``.
        Indices are then positions in the source; unreadable images are skipped and
        counted in ``skipped``. Inputs go to the model's device and dtype.
    layer : str
        Dotted module name; its output must be ``(N, C, h, w)`` or ``(N, C)``.
    channels : sequence of int, optional
        Which channels (default: all).
    k : int
        Examples per channel (fewer if the dataset is smaller).
    batch_size : int, optional
        Most images per forward pass (default: adapt to memory); for an image source also
        the images decoded at a time (default :data:`SOURCE_BLOCK`).
    progress : callable, optional
        ``progress(images_done, images_total)`` after each chunk (total 0 when the
        iterable's length is unknown; for an image source, ``images_done`` is the
        position after the last ranked image).
    num_workers : int
        ``DataLoader`` processes decoding an image source while the model computes.

    Returns
    -------
    TopExamples
        Memory: the top-k per channel and the inputs of the hits (at most ``k`` per
        channel), never the activations of the whole dataset — and for an image source
        one block of decoded images, never the dataset's pixels.

    Raises
    ------
    LayerError, InvalidOptionError, InvalidInputError
        Unknown layer, bad ``k`` or channel, or batches of the wrong shape.
    """
    module = module_of(model)
    _check_k(k)
    find_layer(module, layer)
    data = images_or_dataset
    if isinstance(data, (str, os.PathLike)):
        data = _open_spec(model, data)
    total, blocks = _blocks(data, module, batch_size or SOURCE_BLOCK, num_workers)
    device = model_device(module)
    running = _Running(k, channels, layer)
    feed = _Stream(module, layer, running, total, progress)
    with guarded(module, [device] if device is not None else None):
        for x, positions, paths in blocks:
            feed.add(check_inputs(x, module), batch_size, positions, paths)
    skipped = blocks.skipped if isinstance(blocks, _SourceBlocks) else 0
    if skipped:
        assert isinstance(blocks, _SourceBlocks)
        logger.warning(
            "top_examples skipped %d unreadable image(s) of %d (first: %s)",
            skipped,
            total,
            blocks.first_error,
        )
    if feed.field is None or running.channels is None:
        raise InvalidInputError("the dataset is empty: there are no images to rank")
    return _result(running, feed.field, feed.seen, layer, k, batch_size, skipped)


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

    def add(
        self,
        x: Tensor,
        batch_size: int | None,
        positions: Tensor | None = None,
        paths: Sequence[str] | None = None,
    ) -> None:
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
        if positions is None:
            positions = torch.arange(start, start + len(x))
        names = paths or ()

        def consume(offset: int, maps: Tensor) -> None:
            stop = offset + len(maps)
            self.running.merge(positions[offset:stop], x[offset:stop], maps, names[offset:stop])
            if self.progress is not None:
                self.progress(int(positions[stop - 1]) + 1, self.total)

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
    running: _Running,
    field_: ReceptiveField,
    seen: int,
    layer: str,
    k: int,
    batch_size: int | None,
    skipped: int,
) -> TopExamples:
    assert running.channels is not None
    where = running.where.T.cpu()
    locations = torch.stack([where // running.width, where % running.width], dim=-1)
    boxes = torch.tensor(
        [[field_.box(int(r), int(c)) for r, c in row] for row in locations.tolist()],
        dtype=torch.int64,
    ).reshape(*locations.shape[:2], 4)
    indices = running.index.T.cpu().contiguous()
    return TopExamples(
        layer=layer,
        channels=running.channels.clone(),
        values=running.values.T.cpu().contiguous(),
        indices=indices,
        locations=locations,
        boxes=boxes,
        receptive_field=field_,
        images=MappingProxyType(dict(running.images)),
        count=seen,
        layer_channels=running.layer_channels,
        settings=MappingProxyType({"k": k, "batch_size": batch_size}),
        paths=tuple(tuple(running.paths[i] for i in row) for row in indices.tolist()),
        skipped=skipped,
    )

"""A dataset as the model's inputs: the one reader every dataset job streams through.

:func:`model_source` opens anything :func:`seethrough.data.open_source` takes (a folder of
class subfolders, a CSV/Parquet list, Fashion-MNIST, a ``Dataset``) for a model: folder
names and label strings become the model's class indices (:func:`class_mapping`) and
each image becomes the model's input (its preprocessing). :func:`stream` then yields it
in batches (``DataLoader`` workers decode while the model computes), in index order,
with the unreadable images set aside — so a job's memory is one batch, whatever the
dataset's size. ``explain_dataset`` (:mod:`seethrough.scale`), top-activating examples,
ablation, probes and TCAV all read datasets this way.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, NamedTuple

import torch
from torch import Tensor
from torch.utils.data import DataLoader

from ..data.sources import Batch, ImageSource, collate_items, open_source
from ..models.zoo import FASHION_CNN_PREPROCESS, imagenet_labels
from ..words import imagenet_wnids
from .guard import unwrap_model

__all__ = ["ModelSource", "class_mapping", "model_source", "stream"]


def class_mapping(labels: Sequence[str] | None) -> dict[str, int] | None:
    """How folder names and label strings of a dataset map to the model's class indices.

    Three kinds of name are understood: the index as a string (``"0"`` … ``"K-1"``), the
    ImageNet WordNet id (``"n01440764"``) when ``labels`` are the 1000 ImageNet classes,
    and the model's class name (``"Trouser"``). A name that two classes share is left
    out (use the index or the WordNet id for those). Index strings win over a class name
    spelled like another class's index.

    Parameters
    ----------
    labels : sequence of str or None
        The model's class names in output order (``LoadedModel.labels``).

    Returns
    -------
    dict or None
        Name → class index; ``None`` without labels (then folders are numbered in sorted
        order, torchvision's ``ImageFolder`` rule).
    """
    if labels is None:
        return None
    names = [str(label) for label in labels]
    mapping = {str(i): i for i in range(len(names))}
    if len(names) == 1000 and tuple(names) == imagenet_labels():
        mapping.update({wnid: i for i, wnid in enumerate(imagenet_wnids())})
    counts = Counter(names)
    for i, name in enumerate(names):
        if counts[name] == 1:
            mapping.setdefault(name, i)
    return mapping


class ModelSource(NamedTuple):
    """A source of model inputs, and how its images became inputs (``note``: ``None``
    for a source given ready, ``"fashion-mnist inputs"``, ``{"preprocess": fields}``, or
    ``{"transform": ...}`` for the caller's own transform; for a run's configuration)."""

    source: ImageSource
    note: Any


class _Preprocessing:
    """A ``LoadedModel``'s preprocessing as a source transform (picklable)."""

    def __init__(self, preprocess: Any) -> None:
        self.preprocess = preprocess

    def __call__(self, raw: Any) -> Tensor:
        return self.preprocess(raw)[0]


def model_source(
    model: Any,
    data: Any,
    *,
    transform: Callable[[Any], Tensor] | None = None,
    limit: int | None = None,
    path_column: str = "path",
    label_column: str | None = "label",
) -> ModelSource:
    """``data`` opened as the inputs of ``model``.

    Parameters
    ----------
    model : nn.Module or LoadedModel
        A ``LoadedModel``'s labels name the classes of folders and lists, and its
        preprocessing makes the inputs (Fashion-MNIST with the Fashion-MNIST CNN's
        preprocessing gives exactly :meth:`~seethrough.data.fashion_mnist.FashionMNIST.inputs`).
        With a plain module, the data must already be inputs (or give ``transform``).
    data
        Anything :func:`~seethrough.data.open_source` opens. An ``ImageSource`` is used as
        given (its own transform, if any).
    transform : callable, optional
        ``transform(raw) -> (C, H, W)`` instead of the model's preprocessing.
    limit, path_column, label_column
        As for :func:`~seethrough.data.open_source`.

    Returns
    -------
    ModelSource
    """
    _, labels, preprocess = unwrap_model(model)
    opened = open_source(
        data,
        classes=class_mapping(labels),
        transform=transform,
        limit=limit,
        path_column=path_column,
        label_column=label_column,
    )
    if transform is not None:
        return ModelSource(opened, {"transform": _describe_callable(transform)})
    if preprocess is None or isinstance(data, ImageSource) or opened.spec == "":
        return ModelSource(opened, None)
    if opened.spec.startswith("fashion-mnist") and preprocess == FASHION_CNN_PREPROCESS:
        return ModelSource(opened, "fashion-mnist inputs")
    made = opened.with_transform(_Preprocessing(preprocess))
    return ModelSource(made, {"preprocess": dataclasses.asdict(preprocess)})


def _describe_callable(fn: Any) -> Any:
    """A note of a user's transform: a dataclass's fields, else its qualified name (a
    changed function body with the same name is not noticed)."""
    if dataclasses.is_dataclass(fn) and not isinstance(fn, type):
        return {type(fn).__qualname__: dataclasses.asdict(fn)}
    name = getattr(fn, "__qualname__", type(fn).__qualname__)
    return f"{getattr(fn, '__module__', '')}.{name}"


def stream(
    source: ImageSource,
    batch_size: int,
    *,
    indices: Sequence[int] | None = None,
    batch_sampler: Iterable[list[int]] | None = None,
    num_workers: int = 0,
    seed: int = 0,
    pin_memory: bool = False,
) -> Iterator[Batch]:
    """``source`` in batches of ``batch_size`` images, in index order (``indices``: only
    those; ``batch_sampler``: exactly these batches of positions instead), decoded by
    ``num_workers`` ``DataLoader`` processes while the caller computes.

    Each :class:`~seethrough.data.sources.Batch` holds the readable images as
    ``inputs`` and the unreadable ones in ``failed`` (never raised). The loader has its
    own generator (``seed``): the caller's global random state is not used or advanced.
    """
    if batch_sampler is None:
        order: Sequence[int] = range(len(source)) if indices is None else list(indices)
        batch_sampler = _Batches(order, batch_size)
    loader = DataLoader(
        source,
        batch_sampler=batch_sampler,
        collate_fn=collate_items,
        num_workers=num_workers,
        pin_memory=pin_memory,
        generator=torch.Generator().manual_seed(seed),
    )
    yield from loader


class _Batches:
    """A lazy batch sampler: runs of ``size`` positions of ``order`` (no list of a
    million indices is built)."""

    def __init__(self, order: Sequence[int], size: int) -> None:
        self.order, self.size = order, size

    def __iter__(self) -> Iterator[list[int]]:
        for a in range(0, len(self.order), self.size):
            yield list(self.order[a : a + self.size])

    def __len__(self) -> int:
        return (len(self.order) + self.size - 1) // self.size

"""Explain a whole dataset, shard by shard, into a resumable run folder.

:func:`explain_dataset` cuts the source into the fixed ranges of a
:class:`~seethrough.data.shards.ShardPlan`, explains every range with
:func:`~seethrough.attribution.explain` and writes one output shard per range
(:class:`~seethrough.data.shards.RunWriter`): the maps, and one index row per image with
its prediction and summary statistics of each map. Every shard is a pure function of its
range and the run's configuration — the batches inside a shard start at the shard's first
index, and a batch starting at image ``i`` is explained with seed ``seed + i`` — so one
process, ``torchrun`` ranks and Ray actors write byte-identical files (on the same
hardware and thread count), and a killed run resumes by skipping the finished shards.

Memory is bounded by one shard: nothing is kept across shards.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import logging
import math
import os
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..attribution.api import explain_all, make_method, route_options
from ..attribution.explanation import Explanation
from ..attribution.method import Method
from ..core.budget import LAYOUT_PROBE_ROWS, Budget
from ..core.datasets import class_mapping, model_source, stream
from ..core.focus import TOP_FRACTION
from ..core.guard import guarded, model_device, unwrap_model
from ..core.hooks import HookSet
from ..core.targets import logits_of
from ..core.versions import library_versions
from ..data.shards import Run, RunWriter, ShardPlan, open_run
from ..data.sources import Batch, ImageSource
from ..errors import InvalidInputError, InvalidOptionError, check_option, integer, one_of
from .classes import share_of_top
from .engines import run_shards

__all__ = [
    "CHANNELS",
    "DTYPES",
    "TARGETS",
    "DatasetRun",
    "ShardJob",
    "class_mapping",
    "explain_dataset",
    "map_statistics",
    "model_hash",
]

log = logging.getLogger(__name__)

TARGETS = one_of("label", "predicted")
"""What each image's map explains: its true class, or the model's top class."""
CHANNELS = one_of("sum", "full")
"""How maps are stored: summed over channels ``(n, 1, H, W)``, or in full ``(n, C, H, W)``."""
DTYPES = one_of("float16", "float32")
"""The stored maps' dtype (statistics are computed before the cast, in float64)."""
_EXPLAIN_OPTIONS = ("layout", "nonfinite")
_FUSION_OPTIONS = ("layer_scale", "layer_fusion")
STATISTICS = ("sum", "abs_sum", "max", "min", "top10_share")
"""The per-method columns of the index (``"<method>.<statistic>"``), see :func:`map_statistics`."""


# ------------------------------------------------------------------ model hash, classes


def model_hash(model: nn.Module | Any) -> str:
    """The sha256 (hex) of a model's state: its class name, then every entry of its state
    dict in order (parameters and persistent buffers) — name, dtype, shape and bytes.

    Two models hash alike exactly when they hold the same weights in the same
    architecture class; it goes into a dataset run's configuration, so resuming with
    other weights is refused. ``model`` is an ``nn.Module`` or a ``LoadedModel``.
    """
    module, _, _ = unwrap_model(model)
    digest = hashlib.sha256(type(module).__qualname__.encode())
    for name, tensor in module.state_dict().items():
        t = tensor.detach()
        digest.update(f"\0{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        digest.update(t.cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


# ------------------------------------------------------------------ statistics


def map_statistics(maps: Tensor, top_fraction: float = TOP_FRACTION) -> dict[str, np.ndarray]:
    """Summary statistics of each map, in float64: the index columns of a dataset run.

    Parameters
    ----------
    maps : Tensor
        ``(n, C, H, W)`` attributions at input size.
    top_fraction : float
        The share of pixels ``top10_share`` counts.

    Returns
    -------
    dict of str to ndarray
        ``sum`` and ``abs_sum`` (of every value, all channels), ``max`` and ``min`` (over
        every value), and ``top10_share``: the share of ``|A|`` summed over channels held
        by the ``ceil(top_fraction · H · W)`` largest pixels — ``top_fraction`` for a flat
        map, 1 when those pixels hold everything; the same number as
        :attr:`seethrough.core.focus.Focus.concentration` (NaN for an all-zero map).
        Each ``(n,)``.
    """
    values = maps.detach().to("cpu", torch.float64)
    n = len(values)
    flat = values.reshape(n, -1)
    if n == 0 or flat.shape[1] == 0:
        empty = np.zeros(n, dtype=np.float64)
        return {name: empty.copy() for name in STATISTICS}
    magnitude = flat.abs()
    if values.dim() == 4 and values.shape[1] > 1:  # |A| summed over channels
        weights = values.abs().sum(dim=1).flatten(1)
    else:
        weights = magnitude
    return {
        "sum": flat.sum(dim=1).numpy(),
        "abs_sum": magnitude.sum(dim=1).numpy(),
        "max": flat.amax(dim=1).numpy(),
        "min": flat.amin(dim=1).numpy(),
        "top10_share": share_of_top(weights, top_fraction).numpy(),
    }


# ------------------------------------------------------------------ logits of the call


class _LogitTap:
    """The model's logits for the rows ``x``, read off the explain call's own clean pass.

    A forward hook on the model compares each pass's input with the next rows of ``x``
    (``torch.equal``: one comparison per chunk, and none once every row is captured),
    so the probabilities in the index cost no extra forward pass. A pass over the rows
    from the first one starts the capture again: the last complete sweep in order wins.
    """

    def __init__(self, x: Tensor) -> None:
        self.x = x
        self.parts: list[Tensor] = []
        self.next = 0

    @property
    def logits(self) -> Tensor | None:
        return torch.cat(self.parts) if self.next == len(self.x) else None

    def hook(self, module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        if self.next == len(self.x) or not args or not isinstance(args[0], Tensor):
            return
        rows = args[0]
        for start in dict.fromkeys((self.next, 0)):
            stop = start + len(rows)
            if (
                rows.shape[1:] == self.x.shape[1:]
                and stop <= len(self.x)
                and rows.device == self.x.device
                and torch.equal(rows, self.x[start:stop])
            ):
                if start == 0:
                    self.parts = []
                self.parts.append(logits_of(output).detach().float())
                self.next = stop
                return


def _explain_batch(
    model: Any,
    methods: Sequence[Method],
    x: Tensor,
    target: Any,
    seed: int,
    options: Mapping,
    rows: int | None = None,
) -> tuple[list[Explanation], Tensor]:
    """The explanations of one batch (``rows`` per forward/backward pass), and the
    model's logits on it (captured from the call's clean pass; one extra no-grad forward
    only when no pass ran on the rows)."""
    module, _, _ = unwrap_model(model)
    tap = _LogitTap(x)
    with HookSet() as hooks:
        hooks.add(module.register_forward_hook(tap.hook))
        explanations = explain_all(
            methods,
            model,
            x,
            target,
            seed=seed,
            batch_size=rows,
            layout=options.get("layout", "auto"),
            nonfinite=options.get("nonfinite", "raise"),
            fusion=options.get("fusion"),
        )
    logits = tap.logits
    if logits is None:
        log.debug("no clean pass over the rows was seen; one extra forward pass for the logits")
        with torch.inference_mode():
            logits = logits_of(module(x)).detach().float()
    return explanations, logits.clone()


# ------------------------------------------------------------------ the job of one run


@dataclass(frozen=True, eq=False)
class ShardJob:
    """Everything that decides a dataset run's shards; picklable, so that ``torchrun``
    ranks and Ray actors compute exactly what one process would.

    :meth:`run` computes shards and writes them; :meth:`open_writer` opens the run
    folder. Built by :func:`explain_dataset`; the engines in
    :mod:`seethrough.scale.engines` call it.
    """

    model: Any
    source: ImageSource
    methods: tuple[Method, ...]
    target: str
    channels: str
    dtype: str
    batch_size: int
    seed: int
    num_workers: int
    options: Mapping[str, Any]
    shape: tuple[tuple[int, ...], str] | None  # the first readable image's input shape, path
    plan: ShardPlan
    out: Path
    config: Mapping[str, Any]
    info: Mapping[str, Any]

    @property
    def names(self) -> tuple[str, ...]:
        """The map names: the methods' names, in order."""
        return tuple(m.name for m in self.methods)

    @property
    def device(self) -> torch.device:
        """The model's device (where batches go)."""
        module, _, _ = unwrap_model(self.model)
        return model_device(module) or torch.device("cpu")

    def on_device(self, device: str | torch.device) -> ShardJob:
        """A copy whose model is moved to ``device`` (for a Ray actor's own copy of the
        model; never used on the caller's model)."""
        module, _, _ = unwrap_model(self.model)
        moved = module.to(device)  # in place: only ever called on an unpickled copy
        if isinstance(self.model, nn.Module):
            return dataclasses.replace(self, model=moved)
        return dataclasses.replace(self, model=dataclasses.replace(self.model, module=moved))

    def open_writer(self, *, create: bool = True) -> RunWriter:
        """The run folder's writer (``create=False``: the manifest must exist already)."""
        return RunWriter(
            self.out, config=self.config, plan=self.plan, info=self.info, create=create
        )

    def batches(self, shards: Sequence[int]) -> _ShardBatches:
        """The batches of ``shards``, in order: each shard cut into runs of
        ``batch_size`` indices from its first one (the same whatever else runs)."""
        return _ShardBatches(self.plan, tuple(shards), self.batch_size)

    def run(
        self,
        shards: Sequence[int],
        writer: RunWriter,
        on_shard: Callable[[int], None] | None = None,
    ) -> None:
        """Compute ``shards`` and write each with ``writer`` as soon as it is complete.

        One ``DataLoader`` decodes the images of all of them (``num_workers`` processes,
        overlapped with the explanations). When a core is free for it (a GPU model, or
        fewer torch threads than cores), one thread makes each batch's index columns and
        stored maps while the model explains the next batch (torch releases the GIL in
        its kernels); on a CPU whose every core runs torch's threads, a thread beside
        them only slows them down (measured: 0.80 → 0.73 of the roofline on 2 cores), so
        the main thread does it. A shard is written before the next one starts (a crash
        loses at most the shard being computed), and its results are released once
        written.
        """
        shards = list(shards)
        if not shards:
            return
        loader = stream(
            self.source,
            self.batch_size,
            batch_sampler=self.batches(shards),
            num_workers=self.num_workers,
            pin_memory=self.device.type == "cuda",
            seed=self.seed,  # the loader's own generator: the caller's RNG is not advanced
        )
        batches = iter(loader)  # worker processes start here, before the thread
        said = _Warnings(self.batch_size)
        beside = (
            ThreadPoolExecutor(1, thread_name_prefix="seethrough-shard")
            if _core_to_spare(self.device)
            else None
        )
        try:
            for shard in shards:
                start, stop = self.plan.range(shard)
                part = _ShardParts(self.methods, self.dtype)
                for first in range(start, stop, self.batch_size):
                    with warnings.catch_warnings(record=True) as caught:
                        warnings.simplefilter("always")
                        part.add(self._explain(next(batches), first, beside))
                    said.add(caught)
                maps, rows, errors = part.finish()
                writer.write_shard(shard, maps, rows, errors)
                if on_shard is not None:
                    on_shard(shard)
        finally:
            if beside is not None:
                beside.shutdown(wait=True, cancel_futures=True)
            said.emit()

    def _explain(self, batch: Batch, first: int, beside: Executor | None = None) -> _BatchResult:
        """One batch (``first``: its first index): its bad items as error records, its
        good ones explained, row ``j`` with random numbers from ``seed + first + j``."""
        errors = [{"index": i.index, "path": i.path, "error": i.error} for i in batch.failed]
        if len(batch.inputs) == 0:
            return _BatchResult(errors=errors)
        self._check_shape(batch)
        x = batch.inputs.to(self.device)
        labels = batch.labels.to(torch.long)
        if self.target == "label":
            _check_labels(batch)
            target: Any = labels.to(self.device)
        else:
            target = "predicted"
        explanations, logits = _explain_batch(
            self.model, self.methods, x, target, self.seed + first, self.options, self.batch_size
        )
        return _BatchResult.of(
            batch, explanations, logits, self.channels, self.dtype, errors, beside
        )

    def _check_shape(self, batch: Batch) -> None:
        """Every batch must match the first readable image, so that all maps of a run
        have one size (within a batch, ``collate_items`` checks it)."""
        if self.shape is None or tuple(batch.inputs.shape[1:]) == self.shape[0]:
            return
        shape, path = self.shape
        raise InvalidInputError(
            f"images differ in size: {path} is {shape} but {batch.paths[0]} is "
            f"{tuple(batch.inputs.shape[1:])} as model input; give a transform that resizes, "
            "e.g. the model's preprocessing (load the model with seethrough.load_model)"
        )


class _Warnings:
    """The warnings of a run's ``explain`` calls, said once per kind at the end instead
    of once per batch (a dataset of 10,000 images would print hundreds of lines whose
    row numbers count from each batch's first image)."""

    def __init__(self, batch_size: int) -> None:
        self.batch_size = batch_size
        self.kinds: dict[tuple[type[Warning], str], list[Any]] = {}

    def add(self, caught: Sequence[warnings.WarningMessage]) -> None:
        for w in caught:
            kind = (w.category, str(w.message).split(":")[0])
            self.kinds.setdefault(kind, [0, str(w.message)])[0] += 1

    def emit(self) -> None:
        for (category, _), (count, first) in self.kinds.items():
            if count == 1:
                text = f"{first} (rows count from the batch's first image)"
            else:
                text = (
                    f"{count} batches warned, the first: {first} (rows count from each "
                    f"batch's first image; batches of {self.batch_size} start at each shard)"
                )
            warnings.warn(text, category, stacklevel=3)


@dataclass(frozen=True)
class _ShardBatches:
    """A ``DataLoader`` batch sampler over whole shards, made lazily (a run of a
    million images holds no million-entry list)."""

    plan: ShardPlan
    shards: tuple[int, ...]
    batch_size: int

    def __iter__(self) -> Iterator[list[int]]:
        for shard in self.shards:
            start, stop = self.plan.range(shard)
            for a in range(start, stop, self.batch_size):
                yield list(range(a, min(a + self.batch_size, stop)))

    def __len__(self) -> int:
        return sum(_ceil_div(b - a, self.batch_size) for a, b in map(self.plan.range, self.shards))


def _core_to_spare(device: torch.device) -> bool:
    """Whether a thread beside the model has a core to itself: with a GPU model, or
    when torch's intra-op threads — of every process ``torchrun`` started on this
    machine (``LOCAL_WORLD_SIZE``) — leave a CPU core free."""
    if device.type != "cpu":
        return True
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS, Windows
        cores = os.cpu_count() or 1
    try:
        processes = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    except ValueError:
        processes = 1
    return torch.get_num_threads() * processes < cores


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _first_item(source: ImageSource) -> Any:
    """The source's first readable image (an ``Item`` with pixels; None: none is)."""
    for i in range(len(source)):
        item = source[i]
        if item.pixels is not None:
            return item
    return None


def _layout(module: nn.Module, pixels: Tensor) -> str:
    """``layout="auto"`` decided once for the whole run, on its first readable image:
    ``"channels_last"`` when the model gives the same logits both ways (the check of
    :class:`~seethrough.core.budget.Budget`), else ``"contiguous"``. Once per run rather
    than once per ``explain`` call: the check's two extra one-row forward passes per
    batch cost a few per cent of a run, and every shard — in any process — uses the same
    layout, so its bytes do not depend on which batch happened to decide."""
    device = model_device(module) or torch.device("cpu")
    x = pixels.to(device)[None].expand(LAYOUT_PROBE_ROWS, *pixels.shape)
    budget = Budget(None, device, layout="auto")
    with guarded(module, [device]):
        budget.arrange(module, x)
    return "channels_last" if budget.channels_last else "contiguous"


def _check_labels(batch: Batch) -> None:
    bad = (batch.labels < 0).nonzero()
    if len(bad):
        path = batch.paths[int(bad[0, 0])]
        raise InvalidInputError(
            f"{path} has no label, and target='label' explains each image's true class; "
            "give labelled images, or pass target='predicted' (CLI: --target predicted)"
        )


@dataclass
class _BatchResult:
    """One batch's maps (stored form), index columns and error records; ``pending``:
    still being made beside the model (:meth:`done` waits for it)."""

    maps: dict[str, Tensor] = dataclasses.field(default_factory=dict)
    rows: dict[str, Any] = dataclasses.field(default_factory=dict)
    errors: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    pending: Future[_BatchResult] | None = None

    @classmethod
    def of(
        cls,
        batch: Batch,
        explanations: Sequence[Explanation],
        logits: Tensor,
        channels: str,
        dtype: str,
        errors: list[dict[str, Any]],
        beside: Executor | None = None,
    ) -> _BatchResult:
        """The batch's result. The maps are brought to input size (and summed over
        channels) here; with ``beside`` (a thread), the copies to the CPU, the index
        columns and statistics and the storage cast are made there while the caller
        goes on with the next batch."""
        maps = []
        for e in explanations:
            values = e.to_input_size().attributions.detach()
            if channels == "sum" and values.shape[1] > 1:
                values = values.sum(dim=1, keepdim=True)
            maps.append((e.method, values, getattr(e, "relative_completeness_error", None)))
        targets = explanations[0].targets.detach()
        make = functools.partial(cls._make, batch, targets, logits.detach(), maps, dtype, errors)
        if beside is None:
            return make()
        return cls(errors=errors, pending=beside.submit(make))

    @classmethod
    def _make(
        cls,
        batch: Batch,
        targets: Tensor,
        logits: Tensor,
        maps: Sequence[tuple[str, Tensor, Tensor | None]],
        dtype: str,
        errors: list[dict[str, Any]],
    ) -> _BatchResult:
        logits = logits.to("cpu", torch.float64)
        probabilities = torch.softmax(logits, dim=1)
        targets = targets.cpu().long()
        predicted = logits.argmax(dim=1)
        rows: dict[str, Any] = {
            "index": batch.indices.cpu().numpy().astype(np.int64),
            "path": list(batch.paths),
            "label": batch.labels.cpu().numpy().astype(np.int64),
            "target": targets.numpy().astype(np.int64),
            "predicted": predicted.numpy().astype(np.int64),
            "probability": probabilities.max(dim=1).values.numpy().astype(np.float32),
            "target_probability": probabilities.gather(1, targets[:, None])[:, 0]
            .numpy()
            .astype(np.float32),
        }
        stored: dict[str, Tensor] = {}
        for method, found, relative in maps:
            values = found.to("cpu", torch.float32)
            for stat, column in map_statistics(values).items():
                rows[f"{method}.{stat}"] = column
            if relative is not None:
                rows[f"{method}.completeness_error"] = (
                    relative.detach().to("cpu", torch.float64).numpy()
                )
            stored[method] = values.to(getattr(torch, dtype)).contiguous()
        return cls(stored, rows, errors)

    def done(self) -> _BatchResult:
        """This result, once made (an error raised beside the model is raised here)."""
        return self if self.pending is None else self.pending.result()


class _ShardParts:
    """The batches of one shard, joined in order when the shard is complete."""

    def __init__(self, methods: Sequence[Method], dtype: str) -> None:
        self.names = tuple(m.name for m in methods)
        self.dtype = getattr(torch, dtype)
        self.parts: list[_BatchResult] = []
        ints, floats = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
        self.empty: dict[str, Any] = {"index": ints, "path": np.zeros(0, dtype=np.str_)}
        self.empty.update(label=ints, target=ints, predicted=ints)
        self.empty.update(probability=floats.astype(np.float32))
        self.empty.update(target_probability=floats.astype(np.float32))
        for m in methods:
            self.empty.update({f"{m.name}.{stat}": floats for stat in STATISTICS})
            if hasattr(m.result_type, "relative_completeness_error"):
                self.empty[f"{m.name}.completeness_error"] = floats

    def add(self, part: _BatchResult) -> None:
        self.parts.append(part)

    def finish(self) -> tuple[dict[str, Tensor], dict[str, Any], list[dict[str, Any]]]:
        parts = [p.done() for p in self.parts]
        errors = [e for p in parts for e in p.errors]
        good = [p for p in parts if p.maps]
        if not good:  # every image unreadable: empty maps and typed, empty columns
            return {n: torch.empty(0, dtype=self.dtype) for n in self.names}, self.empty, errors
        maps = {name: torch.cat([p.maps[name] for p in good]) for name in self.names}
        rows: dict[str, Any] = {}
        for column in good[0].rows:
            values = [p.rows[column] for p in good]
            rows[column] = (
                [v for part in values for v in part]
                if isinstance(values[0], list)
                else np.concatenate(values)
            )
        return maps, rows, errors


# ------------------------------------------------------------------ the run's result


@dataclass(frozen=True)
class DatasetRun:
    """What :func:`explain_dataset` did.

    Attributes
    ----------
    out : Path
        The run folder.
    shards : int
        Shards in the run's plan.
    computed : tuple of int
        The shards this call computed (in this process, or by this engine's workers).
    skipped : tuple of int
        The shards that were done already (a resumed run) and were not recomputed.
    images : int
        Images with maps in the run (rows of its index) after this call.
    errors : int
        Images that could not be read, listed in the run's ``errors.jsonl``.
    seconds : float
        Wall-clock time of the call.
    engine : str
        ``"local"``, ``"torchrun"`` or ``"ray"``.
    """

    out: Path
    shards: int
    computed: tuple[int, ...]
    skipped: tuple[int, ...]
    images: int
    errors: int
    seconds: float
    engine: str = "local"

    def open(self) -> Run:
        """The run folder's reader (:func:`seethrough.data.shards.open_run`)."""
        return open_run(self.out)


# ------------------------------------------------------------------ the entry point


def explain_dataset(
    model: nn.Module | Any,
    data: Any,
    methods: str | Method | Sequence[str | Method] = ("gradient",),
    out: str | Path | None = None,
    *,
    target: str = "label",
    channels: str = "sum",
    dtype: str = "float16",
    shard_size: int = 256,
    batch_size: int = 64,
    seed: int = 0,
    num_workers: int = 0,
    engine: str = "auto",
    actors: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    transform: Callable[[Any], Tensor] | None = None,
    limit: int | None = None,
    path_column: str = "path",
    label_column: str | None = "label",
    **options: Any,
) -> DatasetRun:
    """Explain every image of a dataset into a run folder, in bounded memory, resumably.

    Parameters
    ----------
    model : nn.Module or LoadedModel
        A ``LoadedModel``'s preprocessing turns file images into its input (unless
        ``transform`` is given); Fashion-MNIST with the Fashion-MNIST CNN's preprocessing
        gives the exact :meth:`~seethrough.data.fashion_mnist.FashionMNIST.inputs`. With a
        plain ``nn.Module`` the data must already be model inputs (or give ``transform``).
        Never changed; under ``torchrun`` load it on ``cuda:LOCAL_RANK`` for one GPU per
        rank (:func:`seethrough.scale.engines.torchrun_device`).
    data
        Anything :func:`~seethrough.data.sources.open_source` opens: ``"fashion-mnist:test"``,
        an ImageFolder folder, a ``.csv``/``.parquet`` list, an ``ImageSource``, a
        ``Dataset``, or a ``DataLoader`` (its dataset; its sampler and batch size are not
        used: the shard plan decides the order). Folder names and label strings are read
        with :func:`class_mapping` of the model's labels.
    methods : str, Method, or a sequence of them
        Attribution methods (registered names or configured objects), each stored under
        its name; ``**options`` are routed to them as in :func:`seethrough.explain`.
    out : path, optional
        The run folder; an existing run with the same configuration is resumed (finished
        shards are skipped), one with another configuration is refused
        (:class:`~seethrough.data.shards.RunMismatchError`). ``None``: a new temporary
        folder.
    target : {"label", "predicted"}
        Explain each image's true class (needs labels) or the model's top class.
    channels : {"sum", "full"}
        Store maps summed over channels ``(1, H, W)`` or in full ``(C, H, W)``; CAMs are
        upsampled to the input size first (bilinear, :meth:`Explanation.to_input_size`).
    dtype : {"float16", "float32"}
        The stored maps' dtype; the index statistics are computed before the cast.
    shard_size : int
        Images per output shard: the unit of resuming and of work between processes.
    batch_size : int
        Images per ``explain`` call, and rows per forward/backward pass inside it (an
        integration step or noisy sample is a row); batches start at each shard's first
        image. Fixed, unlike ``explain``'s memory-adaptive default, so that the chunks —
        and the rounding — are the same in every process.
    seed : int
        Image ``i`` of the dataset draws its random numbers from ``seed + i`` (when
        an earlier image of its batch was unreadable, from ``seed + i - skipped``: a
        batch's readable images are explained as one ``explain`` call whose seed is
        ``seed`` plus the batch's first index).
    num_workers : int
        ``DataLoader`` processes decoding images (0: in this process).
    engine : {"auto", "local", "torchrun", "ray"}
        ``"auto"``: ``"torchrun"`` when started by ``torchrun`` (``WORLD_SIZE`` > 1),
        else ``"local"``. See :mod:`seethrough.scale.engines`.
    actors : int, optional
        Ray actors (each holding a copy of the model); default: the cluster's CPUs (or
        GPUs, for a model on CUDA).
    progress : callable, optional
        ``progress(shards_done, shards_total)`` after each shard this process finishes
        (or, with Ray, receives), counting the skipped ones as done.
    transform : callable, optional
        ``transform(raw) -> (C, H, W)`` model input; see ``open_source``.
    limit : int, optional
        Only the first ``limit`` images of ``data``.
    path_column, label_column : str
        The columns of a ``.csv``/``.parquet`` list (``label_column=None``: unlabelled).
    **options
        Method options; ``layout`` and ``nonfinite`` of :func:`seethrough.explain`;
        ``layer_scale``/``layer_fusion`` for a CAM given several layers.

    Returns
    -------
    DatasetRun
        The folder, the shards computed and skipped, counts and time; ``.open()`` reads it.

    Raises
    ------
    InvalidOptionError
        A bad option, an unknown method, or an ``out`` folder from another configuration.
    InvalidInputError
        Bad data (an empty folder, a list without its label column, unlabelled images
        with ``target="label"``, images of different sizes without a resizing transform).

    Notes
    -----
    The index holds one row per readable image: ``index``, ``path``, ``label``,
    ``target``, ``predicted``, ``probability`` (softmax of the top class),
    ``target_probability``, ``shard``, ``offset``, and per method ``<method>.sum``,
    ``.abs_sum``, ``.max``, ``.min``, ``.top10_share`` (:func:`map_statistics`) and for
    path methods ``<method>.completeness_error`` (the relative completeness error of
    Sundararajan et al., 2017). The probabilities come from the logits of the explain
    call's own forward pass over the images (no extra pass, see :class:`_LogitTap`).
    """
    started = time.perf_counter()
    job = _build_job(
        model,
        data,
        methods,
        out,
        target=target,
        channels=channels,
        dtype=dtype,
        shard_size=shard_size,
        batch_size=batch_size,
        seed=seed,
        num_workers=num_workers,
        transform=transform,
        opening={"limit": limit, "path_column": path_column, "label_column": label_column},
        options=options,
    )
    report = run_shards(job, engine, actors=actors, progress=progress)
    run = open_run(job.out)
    return DatasetRun(
        out=job.out,
        shards=job.plan.shards,
        computed=report.computed,
        skipped=report.skipped,
        images=int(run.manifest["images"]) if run.complete else len(run),
        errors=int(run.manifest["errors"]) if run.complete else len(run.errors),
        seconds=time.perf_counter() - started,
        engine=report.engine,
    )


def _build_job(
    model: Any,
    data: Any,
    methods: Any,
    out: str | Path | None,
    *,
    target: str,
    channels: str,
    dtype: str,
    shard_size: int,
    batch_size: int,
    seed: int,
    num_workers: int,
    transform: Callable[[Any], Tensor] | None,
    opening: Mapping[str, Any],
    options: Mapping[str, Any],
) -> ShardJob:
    """Check the arguments, open the source and describe the run."""
    check_option("explain_dataset", "target", target, TARGETS)
    check_option("explain_dataset", "channels", channels, CHANNELS)
    check_option("explain_dataset", "dtype", dtype, DTYPES)
    check_option("explain_dataset", "shard_size", shard_size, integer())
    check_option("explain_dataset", "batch_size", batch_size, integer())
    check_option("explain_dataset", "seed", seed, integer(at_least=None))
    check_option("explain_dataset", "num_workers", num_workers, integer(at_least=0))
    module, labels, _ = unwrap_model(model)
    configured = _methods(methods, options)
    source, note = model_source(model, data, transform=transform, **opening)
    transform_note = _canonical(note)
    if len(source) == 0:
        raise InvalidInputError("the dataset has no images; there is nothing to explain")
    if target == "label" and source.record(0)[1] < 0:
        raise InvalidOptionError(
            "the images have no labels, and target='label' explains each image's true "
            "class; pass target='predicted' (CLI: --target predicted) to explain the "
            "model's top class"
        )
    explain_options = {k: options[k] for k in _EXPLAIN_OPTIONS if k in options}
    explain_options["fusion"] = {k: options[k] for k in _FUSION_OPTIONS if k in options}
    first = _first_item(source)
    if explain_options.get("layout", "auto") == "auto" and first is not None:
        explain_options["layout"] = _layout(module, first.pixels)
    plan = ShardPlan(len(source), shard_size)
    config = {
        "job": "explain",
        "methods": [_method_config(m) for m in configured],
        "explain": _canonical(explain_options),
        "target": target,
        "channels": channels,
        "dtype": dtype,
        "shard_size": shard_size,
        "batch_size": batch_size,
        "seed": seed,
        "items": len(source),
        "source": source.fingerprint(),
        "transform": transform_note,
        "model": model_hash(module),
    }
    info = {
        "source": source.spec,
        "model": getattr(model, "name", type(module).__name__),
        "classes": list(labels) if labels is not None else _names(source.classes),
        "versions": dict(library_versions()),
    }
    # absolute: Ray actors and torchrun ranks need not share the caller's working folder
    folder = (
        Path(out).absolute()
        if out is not None
        else Path(tempfile.mkdtemp(prefix="seethrough-run-"))
    )
    return ShardJob(
        model=model,
        source=source,
        methods=tuple(configured),
        target=target,
        channels=channels,
        dtype=dtype,
        batch_size=batch_size,
        seed=seed,
        num_workers=num_workers,
        options=explain_options,
        shape=None if first is None else (tuple(first.pixels.shape), first.path),
        plan=plan,
        out=folder,
        config=config,
        info=info,
    )


def _methods(methods: Any, options: Mapping[str, Any]) -> list[Method]:
    """The configured methods, with unique names (the names of their maps)."""
    listed = [methods] if isinstance(methods, (str, Method)) else list(methods)
    if not listed:
        raise InvalidOptionError("no method given; name at least one (e.g. methods='gradient')")
    method_options = {
        k: v for k, v in options.items() if k not in _EXPLAIN_OPTIONS + _FUSION_OPTIONS
    }
    routed = route_options(listed, method_options)
    configured = [make_method(m, **o) for m, o in zip(listed, routed, strict=True)]
    names = [m.name for m in configured]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise InvalidOptionError(
            f"method {twice[0]!r} is given twice; a run stores one map per method name — "
            "run the other settings into another --out folder"
        )
    return configured


def _names(classes: Sequence[str] | None) -> list[str] | None:
    return list(classes) if classes is not None else None


def _method_config(method: Method) -> dict[str, Any]:
    """A method's name and every option (defaults included), JSON-safe."""
    fields = {f.name: getattr(method, f.name) for f in dataclasses.fields(method)}
    return {"name": method.name, "options": _canonical(fields)}


def _canonical(value: Any) -> Any:
    """``value`` as JSON data: tensors and arrays by dtype, shape and sha256 of bytes,
    methods by their config, sequences as lists, mappings with string keys."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, Tensor):
        t = value.detach().cpu().contiguous()
        data = t.reshape(-1).view(torch.uint8).numpy().tobytes()
        return {"tensor": hashlib.sha256(data).hexdigest(), "dtype": str(t.dtype),
                "shape": list(t.shape)}  # fmt: skip
    if isinstance(value, np.ndarray):
        return _canonical(torch.from_numpy(np.ascontiguousarray(value)))
    if isinstance(value, Method):
        return _method_config(value)
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, (np.integer, np.floating)):
        return _canonical(value.item())
    return repr(value)

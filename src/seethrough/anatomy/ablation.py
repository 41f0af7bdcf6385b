"""Ablation: replace a module's output (or some of its channels) and measure what breaks.

An :class:`Ablation` names a layer, the channels to replace (all when ``None``) and how:

* ``"zero"`` — the values become 0;
* ``"mean"`` — each unit takes its mean over a reference set (Meyes et al. 2019 use zero;
  mean ablation keeps the layer's average input to what follows, so the effect measured is
  that of the *information* removed, not of a shifted input scale);
* ``"resample"`` — each image takes the values of a randomly drawn reference image
  (resample ablation, Chan et al. 2022: the channel keeps its distribution, loses its
  relation to the input).

Ablations act through a forward hook that lives for one call: the model's weights and
modules are never edited. :func:`ablate_weights` is the weight-level variant (a copy with
the chosen kernels zeroed).

Many ablations of one layer run *batched*: the layer's output for a chunk of images is
computed once, repeated once per ablation inside the hook, and only the part of the
network after the layer runs on the repeated rows. The cost of a sweep over ``K``
channels is one pass up to the layer plus ``K`` passes after it, not ``K`` full passes.
Models whose later code reads the batch size from the input (``x.view(batch, -1)``) are
detected and run with repeated inputs instead.

A dataset too large for memory is given as an :class:`~seethrough.data.ImageSource` of
model inputs (:func:`seethrough.core.datasets.model_source`: a folder of class
subfolders, a CSV/Parquet list, Fashion-MNIST): it is streamed in batches, each batch
evaluated with nothing ablated and with every ablation, and only per-class sums are kept
— memory is one batch plus the reference pool, whatever the dataset's size. Unreadable
images are skipped, counted (``AblationResult.skipped``) and logged.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..core.budget import Budget
from ..core.datasets import stream
from ..core.guard import guarded, unwrap_model
from ..core.guard import model_device as _device_of
from ..core.hooks import HookSet
from ..core.layers import find_layer
from ..data.sources import ImageSource, Item
from ..errors import InvalidInputError, InvalidOptionError, LayerError
from ..words import Description

__all__ = [
    "MODES",
    "Ablation",
    "AblationResult",
    "Evaluation",
    "ablate",
    "ablate_weights",
    "check_labelled",
    "check_source",
    "evaluate",
    "reference_statistics",
]

MODES = ("zero", "mean", "resample")
DEFAULT_ROWS = 256
"""Rows per forward pass after the layer when ``batch_size`` is not given (CPU)."""

Progress = Callable[[int, int], None]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Ablation:
    """Replace ``channels`` (all when ``None``) of ``layer``'s output, as ``mode`` says.

    ``channels`` index dimension 1 of the output (conv channels, linear features).
    An empty tuple ablates nothing (the identity)."""

    layer: str
    channels: tuple[int, ...] | None = None
    mode: str = "zero"

    @property
    def name(self) -> str:
        if self.channels is None:
            which = "all"
        elif len(self.channels) <= 4:
            which = ",".join(str(c) for c in self.channels)
        else:
            which = f"{len(self.channels)} channels"
        return f"{self.layer}[{which}] {self.mode}"


@dataclass(frozen=True, eq=False)
class Evaluation:
    """Accuracy and cross-entropy loss, overall and per class (``classes`` entries;
    NaN for a class with no images)."""

    accuracy: float
    loss: float
    class_accuracy: Tensor
    class_loss: Tensor
    class_counts: Tensor


@dataclass(frozen=True, eq=False)
class AblationResult:
    """The model with nothing ablated (``baseline``) and with each ablation in turn.

    ``accuracy_drop[k]`` = baseline accuracy − accuracy with ablation ``k`` (positive:
    the ablation hurts); ``class_accuracy_drop`` ``(K, classes)`` the same per class."""

    baseline: Evaluation
    ablations: tuple[Ablation, ...]
    evaluations: tuple[Evaluation, ...]
    seed: int
    seconds: float
    batched: bool
    settings: Mapping[str, Any] = field(default_factory=dict)
    skipped: int = 0
    """Images of a source that could not be read (not evaluated); 0 for tensors."""

    @property
    def accuracy_drop(self) -> Tensor:
        return torch.tensor([self.baseline.accuracy - e.accuracy for e in self.evaluations])

    @property
    def loss_increase(self) -> Tensor:
        return torch.tensor([e.loss - self.baseline.loss for e in self.evaluations])

    @property
    def class_accuracy_drop(self) -> Tensor:
        if not self.evaluations:
            return torch.empty(0, len(self.baseline.class_accuracy))
        return self.baseline.class_accuracy[None] - torch.stack(
            [e.class_accuracy for e in self.evaluations]
        )

    def describe(self, lang: str = "en") -> Description:
        """The baseline and every ablation's accuracy, in words
        (:func:`seethrough.anatomy.describe.describe_ablation`)."""
        from .describe import describe_ablation

        return describe_ablation(self, lang)

    def ranking(self) -> list[int]:
        """Ablation indices from the most harmful to the least (accuracy, then loss)."""
        drops, losses = self.accuracy_drop.tolist(), self.loss_increase.tolist()
        return sorted(range(len(drops)), key=lambda k: (-drops[k], -losses[k], k))


def check_labelled(inputs: Any, labels: Any, module: nn.Module) -> tuple[Tensor, Tensor]:
    """Validate a labelled dataset: ``inputs`` ``(N, …)`` float, ``labels`` ``(N,)`` int."""
    if not isinstance(inputs, Tensor) or not inputs.dtype.is_floating_point or inputs.dim() < 2:
        raise InvalidInputError(
            "inputs must be a floating-point tensor (N, C, H, W) (or (N, features)); "
            f"got {getattr(inputs, 'shape', type(inputs).__name__)}"
        )
    if not isinstance(labels, Tensor) or labels.dim() != 1 or labels.dtype.is_floating_point:
        raise InvalidInputError(
            f"labels must be a 1-D integer tensor, one class per image; got "
            f"{getattr(labels, 'dtype', type(labels).__name__)} "
            f"{tuple(getattr(labels, 'shape', ()))}"
        )
    if len(labels) != len(inputs) or len(inputs) == 0:
        raise InvalidInputError(
            f"got {len(inputs)} inputs and {len(labels)} labels; give one label per input"
        )
    device = next((p.device for p in module.parameters()), inputs.device)
    if inputs.device != device:
        raise InvalidInputError(
            f"inputs are on {inputs.device} but the model is on {device}; move them with "
            f".to('{device}')"
        )
    return inputs.detach(), labels.detach().to(inputs.device).long()


def check_source(source: ImageSource, labels: Any, what: str) -> None:
    """Validate an :class:`~seethrough.data.ImageSource` given as a labelled dataset:
    no ``labels=`` beside it, at least one image, and labels of its own (checked on its
    first image here; :func:`source_batches` checks every batch as it streams)."""
    if labels is not None:
        raise InvalidInputError(
            f"{what}: labels= is for tensor inputs; an image source has its own labels "
            "(from its class folders or its list's label column) — pass labels=None"
        )
    if len(source) == 0:
        raise InvalidInputError(f"{what}: the image source {_named(source)} holds no images")
    path, label = source.record(0)
    if label < 0:
        raise unlabelled_error(what, source, path)


def unlabelled_error(what: str, source: ImageSource, path: str) -> InvalidInputError:
    """The error for an image of ``source`` without a label (``path``), naming the fix."""
    return InvalidInputError(
        f"{what} needs labelled images, but {_named(source)} has no label for {path}; give a "
        "folder with one subfolder per class, a list file with a label column "
        "(label_column=...), or a dataset of (image, label) pairs"
    )


def _named(source: ImageSource) -> str:
    return repr(source.spec) if source.spec else f"the {type(source).__name__}"


def model_device(module: nn.Module) -> torch.device:
    """Where ``module``'s parameters (else buffers) live; the CPU for a module with none."""
    return _device_of(module) or torch.device("cpu")


class Skips:
    """Counts a source's unreadable images as they stream past (and calls
    ``then(count)`` for each batch that has some); :meth:`warn` logs one warning with
    the count and the first of them."""

    def __init__(self, what: str, then: Callable[[int], None] | None = None) -> None:
        self.what = what
        self.then = then
        self.count = 0
        self.first: Item | None = None

    def __call__(self, failed: Sequence[Item]) -> None:
        for item in failed:
            log.debug("%s: skipped %s: %s", self.what, item.path, item.error)
            self.first = self.first or item
        self.count += len(failed)
        if self.then is not None:
            self.then(len(failed))

    def warn(self) -> None:
        if self.first is not None:
            log.warning(
                "%s: skipped %d unreadable image(s), e.g. %s: %s",
                self.what,
                self.count,
                self.first.path,
                self.first.error,
            )

    def nothing_read(self, source: ImageSource) -> InvalidInputError:
        """The error for a source none of whose images could be read."""
        example = f" (e.g. {self.first.path}: {self.first.error})" if self.first else ""
        return InvalidInputError(
            f"{self.what}: none of the {len(source)} images of {_named(source)} could be "
            f"read{example}"
        )


def source_batches(
    source: ImageSource,
    batch_size: int,
    device: torch.device,
    skips: Skips,
    *,
    labelled: bool = True,
    indices: Sequence[int] | None = None,
    num_workers: int = 0,
) -> Iterator[tuple[Tensor, Tensor]]:
    """``(inputs, labels)`` of ``source`` on ``device``, ``batch_size`` images at a time
    (:func:`seethrough.core.datasets.stream`); unreadable images go to ``skips``, and with
    ``labelled`` an unlabelled image raises :class:`InvalidInputError` naming its path."""
    for batch in stream(
        source,
        batch_size,
        indices=indices,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
    ):
        if batch.failed:
            skips(batch.failed)
        if not len(batch):
            continue
        if labelled and int(batch.labels.min()) < 0:
            raise unlabelled_error(skips.what, source, batch.paths[int(batch.labels.argmin())])
        yield batch.inputs.to(device), batch.labels.to(device)


def _check_ablation(module: nn.Module, ablation: Ablation) -> None:
    if not isinstance(ablation, Ablation):
        raise InvalidOptionError(
            f"expected Ablation objects, got {type(ablation).__name__}; "
            "make one with Ablation(layer, channels, mode)"
        )
    if ablation.mode not in MODES:
        raise InvalidOptionError(
            f"unknown ablation mode {ablation.mode!r} (valid: {', '.join(MODES)})"
        )
    find_layer(module, ablation.layer)


class _Stats:
    """Reference activations of one layer: their mean, and a pool to resample from."""

    def __init__(self, pool: Tensor) -> None:
        self.pool = pool
        self.mean = pool.mean(dim=0)


def reference_statistics(
    model: nn.Module,
    reference: Tensor | ImageSource,
    layers: Sequence[str],
    *,
    batch_size: int | None = None,
    size: int | None = None,
    num_workers: int = 0,
) -> dict[str, Tensor]:
    """Each layer's output for the ``reference`` inputs, ``(R, …)`` (CPU-side pool for
    ``"mean"`` and ``"resample"`` ablations).

    ``reference`` is a tensor of inputs, or an :class:`~seethrough.data.ImageSource` of
    model inputs streamed in batches (unreadable images skipped; its labels unused).
    ``size``: only the first ``size`` inputs (of a source: its first ``size`` readable
    images); ``None``: all."""
    outputs: dict[str, list[Tensor]] = {name: [] for name in layers}
    device = model_device(model) if isinstance(reference, ImageSource) else reference.device
    rows = batch_size or DEFAULT_ROWS
    budget = Budget(rows, device)

    def run(x: Tensor) -> None:
        def step(start: int, stop: int) -> None:
            with HookSet() as hooks:
                for name in layers:
                    hooks.add(find_layer(model, name).register_forward_hook(_keeper(outputs[name])))
                with torch.inference_mode():
                    model(x[start:stop])

        budget.run(len(x), step)

    with guarded(model, [device]):
        if not isinstance(reference, ImageSource):
            run(reference if size is None else reference[:size])
        else:
            _stream_reference(reference, size, rows, device, num_workers, run)
    return {name: torch.cat(parts) for name, parts in outputs.items()}


def _stream_reference(
    source: ImageSource,
    size: int | None,
    rows: int,
    device: torch.device,
    num_workers: int,
    run: Callable[[Tensor], None],
) -> None:
    """Feed the first ``size`` readable images of ``source`` (all: ``None``) to ``run``."""
    skips = Skips("reference_statistics")
    wanted = len(source) if size is None else size
    taken = 0
    chunk = max(1, min(rows, wanted))
    for x, _ in source_batches(
        source, chunk, device, skips, labelled=False, num_workers=num_workers
    ):
        kept = x[: wanted - taken]
        run(kept)
        taken += len(kept)
        if taken >= wanted:
            break
    if taken == 0:
        raise skips.nothing_read(source)


def _keeper(store: list[Tensor]) -> Callable[[nn.Module, Any, Any], None]:
    def hook(module: nn.Module, inputs: Any, output: Any) -> None:
        if not isinstance(output, Tensor):
            raise LayerError(f"{type(module).__name__} returns {type(output).__name__}")
        store.append(output.detach().clone())

    return hook


def _replace(
    values: Tensor, ablation: Ablation, stats: _Stats | None, picks: Tensor | None
) -> Tensor:
    """``values`` ``(n, C, …)`` with the ablation applied (a new tensor); ``picks`` are
    the reference rows a resample ablation copies, one per image."""
    channels = ablation.channels
    if channels is not None and len(channels) == 0:
        return values
    index: Any = slice(None) if channels is None else list(channels)
    out = values.clone()
    if ablation.mode == "zero":
        out[:, index] = 0
    elif ablation.mode == "mean":
        assert stats is not None
        out[:, index] = stats.mean[index].to(out.dtype)
    else:
        assert stats is not None and picks is not None
        out[:, index] = stats.pool[picks][:, index].to(out.dtype)
    return out


def _check_channels(ablation: Ablation, output: Tensor) -> None:
    if ablation.channels is None:
        return
    size = output.shape[1] if output.dim() > 1 else 0
    bad = [c for c in ablation.channels if not isinstance(c, int) or not 0 <= c < size]
    if bad:
        raise InvalidOptionError(
            f"channel {bad[0]!r} is out of range for {ablation.layer!r}, whose output has "
            f"{size} channels (valid: 0 to {size - 1})"
        )


class _Expander:
    """The forward hook: repeat a layer's output once per ablation and apply each.

    The replacement is vectorised over the ablations: per mode, a ``(G, C)`` mask of the
    channels each ablation replaces, applied with one ``torch.where`` — a sweep over
    thousands of units costs a few tensor operations per pass, not one per unit."""

    def __init__(
        self,
        group: Sequence[Ablation],
        stats: _Stats | None,
        picks: Sequence[Tensor | None],
        expand: bool,
        masks: dict[tuple[str, int], Tensor | None] | None = None,
    ) -> None:
        self.group = group
        self.stats = stats
        self.picks = picks
        self.expand = expand
        self.calls = 0
        self.masks = masks if masks is not None else {}  # shared by the passes of a group

    def _mask(self, mode: str, channels: int, device: torch.device) -> Tensor | None:
        key = (mode, channels)
        if key not in self.masks:
            self.masks[key] = self._build_mask(mode, channels, device)
        return self.masks[key]

    def _build_mask(self, mode: str, channels: int, device: torch.device) -> Tensor | None:
        rows = [k for k, a in enumerate(self.group) if a.mode == mode]
        if not rows:
            return None
        mask = torch.zeros(len(self.group), channels, dtype=torch.bool)
        for k in rows:
            chosen = self.group[k].channels
            mask[k, slice(None) if chosen is None else list(chosen)] = True
        return mask.to(device)

    def __call__(self, module: nn.Module, inputs: Any, output: Any) -> Tensor:
        self.calls += 1
        if self.calls > 1:
            raise LayerError(
                f"layer {self.group[0].layer!r} runs more than once per forward pass; "
                "ablate a module that runs once (e.g. its parent block)"
            )
        if not isinstance(output, Tensor) or output.dim() < 2:
            raise LayerError(
                f"layer {self.group[0].layer!r} returns "
                f"{type(output).__name__ if not isinstance(output, Tensor) else 'a 1-D tensor'}"
                "; ablation needs a tensor (N, C, …)"
            )
        if not self.masks:  # checked once per group of ablations
            for ablation in self.group:
                _check_channels(ablation, output)
        g = len(self.group)
        n = len(output) if self.expand else len(output) // g
        base = output.expand(g, *output.shape) if self.expand else output.reshape(g, n, -1)
        base = base.reshape(g, n, *output.shape[1:])
        tail = (1,) * (output.dim() - 2)
        out = base
        zero = self._mask("zero", output.shape[1], output.device)
        if zero is not None:
            out = torch.where(zero[:, None, :].reshape(g, 1, -1, *tail), 0, out)
        mean = self._mask("mean", output.shape[1], output.device)
        if mean is not None:
            assert self.stats is not None
            fill = self.stats.mean.to(out.dtype)[None, None]
            out = torch.where(mean[:, None, :].reshape(g, 1, -1, *tail), fill, out)
        for k, ablation in enumerate(self.group):  # resample: per ablation (own draws)
            if ablation.mode == "resample":
                out = out.clone() if out is base else out
                out[k] = _replace(out[k], ablation, self.stats, self.picks[k])
        return out.reshape(g * n, *output.shape[1:])


def _tally(logits: Tensor, labels: Tensor, classes: int, correct: Tensor, losses: Tensor) -> None:
    """Add per-class correct counts and loss sums of a ``(G, n, classes)`` block."""
    g, n = logits.shape[:2]
    flat = logits.reshape(g * n, -1)
    if flat.dtype in (torch.float16, torch.bfloat16):
        flat = flat.float()
    repeated = labels.repeat(g)
    loss = F.cross_entropy(flat, repeated, reduction="none").reshape(g, n)
    hit = (flat.argmax(dim=1) == repeated).reshape(g, n).double()
    offset = (torch.arange(g, device=labels.device)[:, None] * classes + labels[None]).reshape(-1)
    correct += torch.bincount(offset, hit.reshape(-1), minlength=g * classes).reshape(g, -1).cpu()
    losses += (
        torch.bincount(offset, loss.reshape(-1).double(), minlength=g * classes)
        .reshape(g, -1)
        .cpu()
    )


def _evaluation(correct: Tensor, losses: Tensor, counts: Tensor) -> Evaluation:
    total = counts.sum().clamp_min(1)
    per = counts.double()
    with torch.no_grad():
        class_acc = torch.where(per > 0, correct / per.clamp_min(1), torch.nan)
        class_loss = torch.where(per > 0, losses / per.clamp_min(1), torch.nan)
    return Evaluation(
        accuracy=float(correct.sum() / total),
        loss=float(losses.sum() / total),
        class_accuracy=class_acc,
        class_loss=class_loss,
        class_counts=counts.clone(),
    )


def _logits(output: Any) -> Tensor:
    from ..core.targets import logits_of

    return logits_of(output)


class _Sweep:
    """The ablations of one layer, fed batch after batch of images: per-class correct
    counts and loss sums ``(len(group), classes)``, and whether the layer's output could
    be expanded (``expand``; else the inputs were repeated)."""

    def __init__(
        self,
        module: nn.Module,
        group: Sequence[Ablation],
        members: Sequence[int],
        stats: _Stats | None,
        classes: int,
        rows: int,
        seed: int,
    ) -> None:
        k = len(group)
        self.module, self.group, self.stats, self.classes = module, group, stats, classes
        self.correct = torch.zeros(k, classes, dtype=torch.float64)
        self.losses = torch.zeros(k, classes, dtype=torch.float64)
        self.images = max(1, rows // k)  # all ablations of a chunk in one pass when they fit
        self.per_pass = max(1, rows // self.images)
        # Resample ablation k draws one reference row per image, in order, from its own
        # generator (seed + k): the draws do not depend on chunking or batching.
        self.generators = [
            torch.Generator().manual_seed(seed + m) if a.mode == "resample" else None
            for a, m in zip(group, members)
        ]
        self.layer = find_layer(module, group[0].layer)
        self.expand = True
        self.masks: dict[int, dict[tuple[str, int], Tensor | None]] = {}
        self.budget: Budget | None = None

    def _draws(self, n: int) -> list[Tensor | None]:
        draws: list[Tensor | None] = []
        for generator in self.generators:
            if generator is None:
                draws.append(None)
                continue
            assert self.stats is not None
            draws.append(torch.randint(len(self.stats.pool), (n,), generator=generator))
        return draws

    def _run(self, chunk: Tensor, part: list[int], picks: list[Tensor | None]) -> Tensor | None:
        cache = self.masks.setdefault(part[0], {})
        hook = _Expander([self.group[j] for j in part], self.stats, picks, self.expand, cache)
        feed = chunk if self.expand else chunk.repeat(len(part), *([1] * (chunk.dim() - 1)))
        with HookSet() as hooks, torch.inference_mode():
            hooks.add(self.layer.register_forward_hook(hook))
            try:
                out = _logits(self.module(feed))
            except RuntimeError:
                if not self.expand:
                    raise
                return None  # e.g. a view with the batch size read before the layer
        if out.shape[0] != len(part) * len(chunk):
            if not self.expand:
                raise LayerError(
                    f"the model returned {out.shape[0]} rows for {len(feed)} inputs; "
                    "ablation needs one output row per input"
                )
            return None
        return out

    def feed(self, x: Tensor, labels: Tensor, advance: Callable[[int], None]) -> None:
        """Add the sums of every ablation of the group over ``x``/``labels``."""
        k, classes = len(self.group), self.classes
        draws = self._draws(len(x))

        def step(start: int, stop: int) -> None:
            chunk, y = x[start:stop], labels[start:stop]
            for g0 in range(0, k, self.per_pass):
                part = list(range(g0, min(k, g0 + self.per_pass)))
                picks = [None if d is None else d[start:stop] for d in (draws[j] for j in part)]
                out = self._run(chunk, part, picks)
                if out is None:
                    self.expand = False  # later code reads the batch size: repeat the inputs
                    out = self._run(chunk, part, picks)
                    assert out is not None
                c = torch.zeros(len(part), classes, dtype=torch.float64)
                lo = torch.zeros(len(part), classes, dtype=torch.float64)
                _tally(out.reshape(len(part), len(chunk), -1), y, classes, c, lo)
                self.correct[part] += c
                self.losses[part] += lo
            advance(stop - start)

        if self.budget is None:
            self.budget = Budget(self.images, x.device)
        self.budget.run(len(x), step)


def evaluate(
    model: nn.Module,
    inputs: Tensor | ImageSource,
    labels: Tensor | None = None,
    *,
    batch_size: int | None = None,
    num_workers: int = 0,
) -> Evaluation:
    """Accuracy and loss of ``model`` on a labelled set, overall and per class
    (``inputs``, ``labels``: as for :func:`ablate`; a source's unreadable images are
    skipped and logged)."""
    return ablate(
        model, inputs, labels, [], batch_size=batch_size, num_workers=num_workers
    ).baseline


def ablate(
    model: nn.Module | Any,
    inputs: Tensor | ImageSource,
    labels: Tensor | None,
    ablations: Sequence[Ablation],
    *,
    reference: Tensor | ImageSource | None = None,
    reference_size: int = 512,
    seed: int = 0,
    batch_size: int | None = None,
    progress: Progress | None = None,
    num_workers: int = 0,
) -> AblationResult:
    """Evaluate ``model`` on ``inputs``/``labels`` with nothing ablated and with each of
    ``ablations`` in turn (module docstring).

    Parameters
    ----------
    model : nn.Module or LoadedModel
        In eval mode; never modified.
    inputs : Tensor or ImageSource
        ``(N, C, H, W)`` inputs as the model expects them; or an
        :class:`~seethrough.data.ImageSource` of model inputs with labels of its own
        (:func:`seethrough.core.datasets.model_source`), streamed in batches of
        ``batch_size`` images onto the model's device (memory: one batch), its unreadable
        images skipped and counted.
    labels : Tensor or None
        ``(N,)`` class indices for tensor inputs; ``None`` with a source.
    ablations : sequence of Ablation
        Ablations of the same layer are evaluated in one batched sweep.
    reference : Tensor or ImageSource, optional
        Inputs whose activations give ``"mean"`` and ``"resample"`` their values
        (default: the first ``reference_size`` of ``inputs`` — of a source, its first
        ``reference_size`` readable images).
    seed : int
        Resample ablation ``k`` draws its reference rows from ``seed + k``.
    batch_size : int, optional
        Rows per forward pass after the ablated layer (default 256); also the images a
        source is read in at a time.
    progress : callable, optional
        ``progress(done, total)`` in images × layer groups.
    num_workers : int
        ``DataLoader`` processes decoding a source's images (0: in this process).

    Raises
    ------
    InvalidInputError
        Bad inputs or labels; ``labels`` given with a source; an unlabelled source; a
        source none of whose images can be read.
    """
    started = time.perf_counter()
    module = unwrap_model(model, None)[0]
    if isinstance(inputs, ImageSource):
        check_source(inputs, labels, "ablate")
        device = model_device(module)
    else:
        x, y = check_labelled(inputs, labels, module)
        device = x.device
    ablations = list(ablations)
    for a in ablations:
        _check_ablation(module, a)
    rows = batch_size or DEFAULT_ROWS
    if not isinstance(rows, int) or rows < 1:
        raise InvalidOptionError(f"batch_size must be a positive integer, got {batch_size!r}")
    groups: dict[str, list[int]] = {}
    for k, a in enumerate(ablations):
        groups.setdefault(a.layer, []).append(k)
    needs_stats = sorted({a.layer for a in ablations if a.mode != "zero"})
    if isinstance(inputs, ImageSource):
        ref: Tensor | ImageSource = inputs if reference is None else reference
        size = reference_size if reference is None else None
        pools = _pools(module, ref, needs_stats, rows, size, num_workers)
        used = len(next(iter(pools.values()))) if pools else min(size or len(ref), len(ref))
    else:
        ref = reference if reference is not None else x[:reference_size]
        pools = _pools(module, ref, needs_stats, rows, None, num_workers)
        used = len(ref)
    total = len(inputs) * (1 + len(groups))
    finished = 0

    def advance(n: int) -> None:
        nonlocal finished
        finished += n
        if progress is not None:
            progress(finished, total)

    # an unreadable image counts as done for the baseline and every layer group
    skips = Skips("ablate", lambda n: advance(n * (1 + len(groups))))
    data = (
        source_batches(inputs, rows, device, skips, num_workers=num_workers)
        if isinstance(inputs, ImageSource)
        else [(x, y)]
    )
    run = _Totals(module, ablations, groups, pools, rows, seed, advance)
    with guarded(module, [device]):
        for bx, by in data:
            run.feed(bx, by)
    if run.counts is None:
        assert isinstance(inputs, ImageSource)
        raise skips.nothing_read(inputs)
    skips.warn()
    evaluations: list[Evaluation | None] = [None] * len(ablations)
    for sweep, members in zip(run.sweeps, groups.values()):
        for j, k in enumerate(members):
            evaluations[k] = _evaluation(sweep.correct[j], sweep.losses[j], run.counts)
    return AblationResult(
        baseline=_evaluation(run.correct, run.losses, run.counts),
        ablations=tuple(ablations),
        evaluations=tuple(e for e in evaluations if e is not None),
        seed=seed,
        seconds=time.perf_counter() - started,
        batched=all(sweep.expand for sweep in run.sweeps),
        settings={"batch_size": rows, "reference_size": used},
        skipped=skips.count,
    )


def _pools(
    module: nn.Module,
    reference: Tensor | ImageSource,
    layers: Sequence[str],
    rows: int,
    size: int | None,
    num_workers: int,
) -> dict[str, Tensor]:
    if not layers:
        return {}
    return reference_statistics(
        module, reference, layers, batch_size=rows, size=size, num_workers=num_workers
    )


class _Totals:
    """What :func:`ablate` adds up over batches: the per-class correct counts and loss
    sums with nothing ablated, the class counts, and one :class:`_Sweep` per layer (made
    at the first batch, when the number of classes is known)."""

    def __init__(
        self,
        module: nn.Module,
        ablations: Sequence[Ablation],
        groups: Mapping[str, list[int]],
        pools: Mapping[str, Tensor],
        rows: int,
        seed: int,
        advance: Callable[[int], None],
    ) -> None:
        self.module, self.ablations, self.groups, self.pools = module, ablations, groups, pools
        self.rows, self.seed, self.advance = rows, seed, advance
        self.correct = self.losses = torch.zeros(0)
        self.counts: Tensor | None = None
        self.sweeps: list[_Sweep] = []

    def feed(self, x: Tensor, y: Tensor) -> None:
        correct, losses, classes = _baseline(self.module, x, y, self.rows, self.advance)
        counts = torch.bincount(y.cpu(), minlength=classes)
        if self.counts is None:
            self.correct, self.losses, self.counts = correct, losses, counts
            self.sweeps = [
                self._sweep(layer, members, classes) for layer, members in self.groups.items()
            ]
        else:
            self.correct += correct
            self.losses += losses
            self.counts += counts
        for sweep in self.sweeps:
            sweep.feed(x, y, self.advance)

    def _sweep(self, layer: str, members: list[int], classes: int) -> _Sweep:
        stats = _Stats(self.pools[layer]) if layer in self.pools else None
        group = [self.ablations[k] for k in members]
        return _Sweep(self.module, group, members, stats, classes, self.rows, self.seed)


def _baseline(
    module: nn.Module, x: Tensor, y: Tensor, rows: int, advance: Callable[[int], None]
) -> tuple[Tensor, Tensor, int]:
    parts: list[Tensor] = []

    def step(start: int, stop: int) -> None:
        with torch.inference_mode():
            parts.append(_logits(module(x[start:stop])))
        advance(stop - start)

    Budget(rows, x.device).run(len(x), step)
    logits = torch.cat(parts)
    if logits.dim() != 2:
        raise InvalidInputError(f"the model's output has shape {tuple(logits.shape)}, not (N, C)")
    classes = logits.shape[1]
    if int(y.max()) >= classes or int(y.min()) < 0:
        raise InvalidInputError(
            f"labels must be class indices 0 to {classes - 1} (the model has {classes} "
            f"classes); got {int(y.min())} to {int(y.max())}"
        )
    correct = torch.zeros(1, classes, dtype=torch.float64)
    losses = torch.zeros(1, classes, dtype=torch.float64)
    _tally(logits[None], y, classes, correct, losses)
    return correct[0], losses[0], classes


def ablate_weights(model: nn.Module, layer: str, channels: Sequence[int]) -> nn.Module:
    """A copy of ``model`` whose ``layer`` (a conv or linear module) has the kernels and
    biases of output ``channels`` set to zero — fewer working kernels, the weight-level
    ablation. The user's model is untouched."""
    target = find_layer(model, layer)
    if not isinstance(target, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)):
        raise LayerError(
            f"layer {layer!r} is a {type(target).__name__}; weight ablation needs a conv or "
            "linear layer (use a hook ablation, seethrough.anatomy.ablate, for any module)"
        )
    size = target.weight.shape[0]
    bad = [c for c in channels if not isinstance(c, int) or not 0 <= c < size]
    if bad:
        raise InvalidOptionError(
            f"channel {bad[0]!r} is out of range for {layer!r} ({size} output channels)"
        )
    clone = copy.deepcopy(model)
    module = find_layer(clone, layer)
    with torch.no_grad():
        assert isinstance(module.weight, Tensor)
        module.weight[list(channels)] = 0
        if isinstance(module.bias, Tensor):
            module.bias[list(channels)] = 0
    return clone

"""ROAR — remove and retrain (Hooker et al., 2019, "A Benchmark for Interpretability
Methods in Deep Neural Networks", NeurIPS).

Does an attribution method find the inputs a model *needs*? Rank the elements of every
training and test image by the method's attribution on the trained model, replace the
top ``fraction`` of each image with an uninformative value (the training set's
per-channel mean), train a fresh model from scratch on the modified training set and
measure its accuracy on the modified test set. Retraining is what separates "the model
needs these pixels" from "the modified images are out of distribution". A method is
better than a random ranking at a fraction when accuracy drops *more* than with the same
number of randomly chosen elements removed.

Hooker et al. found most estimators (gradient, integrated gradients, guided backprop and
their SmoothGrad averages) no better than random on ImageNet, Food-101 and Birdsnap,
and SmoothGrad-Squared and VarGrad far better.

Deviations from the paper, each where it happens:

* Ties in a ranking are broken in an order drawn from the seed (the reference code's
  ``tf.nn.top_k`` keeps raster order), so a constant map *is* the random ranking.
* The random control removes exactly ``k`` elements per image, the same number as every
  method (the reference code drops each element with probability ``fraction``).
* Layer-resolution maps (CAMs, not in the paper) are upsampled bilinearly first; a
  one-channel map on a multi-channel input removes whole pixels.
* ``absolute=True`` ranks by magnitude; the default ranks signed values as the
  reference code does.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from ..attribution import Method, explain, make_method
from ..core.guard import guarded, model_device
from ..core.stats import Interval, holm, mean_ci, paired_test
from ..core.versions import library_versions
from ..errors import InvalidInputError, InvalidOptionError
from ..models.training import train_classifier
from ..words import Description

__all__ = [
    "RANDOM",
    "TARGETS",
    "RoarComparison",
    "RoarResult",
    "attribution_maps",
    "roar",
    "tie_broken_ranks",
]

RANDOM = "random"
TARGETS = ("predicted", "label")
_RANK_CHUNK = 1024  # rows ranked at once; fixed, so the tie-break draws never depend on it

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RoarComparison:
    """One method against the random ranking at one fraction.

    ``difference`` is the method's retrained test accuracy minus the random ranking's
    (negative: the method removed more of what the model needs), with its bootstrap
    interval over test images; ``p_value`` a two-sided paired sign-flip test over test
    images and ``p_holm`` that p-value Holm-adjusted over every comparison of the family.
    ``per_seed`` is the difference for each retraining seed alone; ``seeds_agree`` says
    whether all of them have the sign of the verdict. ``verdict``: ``"better"`` (accuracy
    lower than random's, ``p_holm < alpha``), ``"worse"`` (higher) or
    ``"indistinguishable"``.
    """

    method: str
    fraction: float
    difference: Interval
    p_value: float
    p_holm: float
    per_seed: tuple[float, ...]
    verdict: Literal["better", "worse", "indistinguishable"]
    seeds_agree: bool


@dataclass(frozen=True, eq=False)
class RoarResult:
    """Retrained test accuracy per ranking × fraction × seed.

    Attributes
    ----------
    methods : tuple of str
        The rankings, the random control :data:`RANDOM` last.
    fractions : tuple of float
        Fractions of each image's elements removed.
    removed : tuple of int
        Pixels removed per image at each fraction, ``floor(fraction × H × W)`` (a map
        with one value per channel removes ``floor(fraction × C × H × W)`` values).
    seeds : tuple of int
        Retraining seeds: seed ``s`` initialises the model (global RNG, forked), orders
        the batches and breaks ties / draws the random ranking.
    correct : Tensor
        ``(methods, fractions, seeds, n_test)`` bool: whether the model retrained on
        that modified training set classifies each modified test image correctly.
    reference_correct : Tensor or None
        ``(seeds, n_test)``: the same for models trained on the unmodified data.
    unretrained_correct : Tensor or None
        ``(methods, fractions, seeds, n_test)``: the *explained* model, not retrained, on
        the modified test images (what ROAR argues against reading alone).
    settings : Mapping
        Everything that defines the run (epochs, baseline, target, …).
    attribution_seconds : Mapping[str, float]
        Time to compute each method's maps on all training and test images.
    seconds : float
        Wall-clock time of the whole run.
    """

    methods: tuple[str, ...]
    fractions: tuple[float, ...]
    removed: tuple[int, ...]
    seeds: tuple[int, ...]
    correct: Tensor
    reference_correct: Tensor | None
    unretrained_correct: Tensor | None
    settings: Mapping[str, Any]
    attribution_seconds: Mapping[str, float]
    seconds: float
    versions: Mapping[str, str] = field(default_factory=dict)

    @property
    def accuracy(self) -> Tensor:
        """``(methods, fractions, seeds)`` retrained test accuracy."""
        return self.correct.double().mean(dim=-1)

    @property
    def reference_accuracy(self) -> Tensor | None:
        """``(seeds,)`` test accuracy of models trained on the unmodified data."""
        return None if self.reference_correct is None else self.reference_correct.double().mean(-1)

    def _cell(self, method: str, fraction: float) -> tuple[int, int]:
        if method not in self.methods:
            raise InvalidOptionError(f"no method {method!r} (valid: {', '.join(self.methods)})")
        matches = [i for i, f in enumerate(self.fractions) if math.isclose(f, fraction)]
        if not matches:
            listed = ", ".join(f"{f:g}" for f in self.fractions)
            raise InvalidOptionError(f"no fraction {fraction!r} (valid: {listed})")
        return self.methods.index(method), matches[0]

    def per_image(self, method: str, fraction: float) -> np.ndarray:
        """``(n_test,)`` each test image's correctness averaged over the seeds."""
        m, f = self._cell(method, fraction)
        return self.correct[m, f].double().mean(dim=0).numpy()

    def interval(
        self, method: str, fraction: float, level: float = 0.95, resamples: int = 10_000
    ) -> Interval:
        """Mean retrained accuracy over the seeds with a percentile bootstrap interval
        over test images (each image's correctness averaged over the seeds first: the
        interval covers test-set sampling; seed-to-seed spread is in :attr:`accuracy`)."""
        return mean_ci(self.per_image(method, fraction), level, resamples)[0]

    def reference_interval(self, level: float = 0.95, resamples: int = 10_000) -> Interval | None:
        """The same interval for the models trained on unmodified data."""
        if self.reference_correct is None:
            return None
        values = self.reference_correct.double().mean(dim=0).numpy()
        return mean_ci(values, level, resamples)[0]

    def compare(
        self, alpha: float = 0.05, level: float = 0.95, resamples: int = 10_000, seed: int = 0
    ) -> tuple[RoarComparison, ...]:
        """Every method against :data:`RANDOM` at every fraction, Holm-corrected over the
        whole family (methods × fractions). Paired over test images: the same image,
        modified by the method's ranking and by the random one."""
        if not 0 < alpha < 1:
            raise InvalidOptionError(f"alpha must be in (0, 1), got {alpha!r}")
        cells = [(m, f) for m in self.methods if m != RANDOM for f in self.fractions]
        raw = []
        for method, fraction in cells:
            d = self.per_image(method, fraction) - self.per_image(RANDOM, fraction)
            interval = mean_ci(d, level, resamples, seed)[0]
            raw.append((interval, paired_test(d, resamples=resamples, seed=seed)))
        adjusted = holm([p for _, p in raw]) if raw else []
        acc = self.accuracy
        out = []
        for (method, fraction), (interval, p), p_holm in zip(cells, raw, adjusted):
            m, f = self._cell(method, fraction)
            per_seed = tuple(float(v) for v in acc[m, f] - acc[self.methods.index(RANDOM), f])
            verdict = _verdict(interval.estimate, p_holm, alpha)
            sign = {"better": -1.0, "worse": 1.0}.get(verdict, 0.0)
            agree = sign != 0 and all(np.sign(v) == sign for v in per_seed)
            out.append(
                RoarComparison(method, fraction, interval, p, p_holm, per_seed, verdict, agree)
            )
        return tuple(out)

    def describe(self, lang: str = "en", resamples: int = 10_000) -> Description:
        """Every method against the random ranking at every fraction, in words: better →
        a finding, worse → not reliable for this model, indistinguishable → hedged
        (:func:`seethrough.trust.describe.describe_roar`; the numbers are the JSON's
        ``"comparisons"`` with the same ``resamples``)."""
        from .describe import describe_roar

        return describe_roar(self, lang, resamples)

    def table(self, digits: int = 3, resamples: int = 10_000) -> str:
        """Markdown: retrained accuracy ``mean [low, high]`` per method × fraction."""
        head = ["method", *(f"{f:g} ({k})" for f, k in zip(self.fractions, self.removed))]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for method in self.methods:
            cells = [
                self.interval(method, f, resamples=resamples).format(digits) for f in self.fractions
            ]
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
        return "\n".join(lines)


def _verdict(
    difference: float, p_holm: float, alpha: float
) -> Literal["better", "worse", "indistinguishable"]:
    if p_holm >= alpha or difference == 0:
        return "indistinguishable"
    return "better" if difference < 0 else "worse"


# ------------------------------------------------------------------------------ ranking


def tie_broken_ranks(relevance: Tensor, generator: torch.Generator) -> Tensor:
    """Rank of every element of each row, 0 = most relevant; ties in random order.

    Parameters
    ----------
    relevance : Tensor
        ``(N, E)`` one relevance per element, higher first.
    generator : torch.Generator
        A CPU generator; it draws one random order per row (rows in sequence), which
        decides among equal values.

    Returns
    -------
    Tensor
        ``(N, E)`` int32 ranks on ``relevance``'s device; a constant row gets a uniformly
        random permutation.
    """
    if not bool(torch.isfinite(relevance).all()):
        raise InvalidInputError("attribution maps contain NaN or infinite values; cannot rank")
    n, e = relevance.shape
    ranks = torch.empty(n, e, dtype=torch.int32, device=relevance.device)
    positions = torch.arange(e, dtype=torch.int32, device=relevance.device)
    for start in range(0, n, _RANK_CHUNK):
        rows = relevance[start : start + _RANK_CHUNK]
        shuffle = torch.rand(len(rows), e, generator=generator).argsort(dim=1)
        shuffle = shuffle.to(rows.device)
        # a stable sort of the shuffled row keeps equal values in the shuffled order
        order = torch.argsort(rows.gather(1, shuffle), dim=1, descending=True, stable=True)
        order = shuffle.gather(1, order)
        ranks[start : start + len(rows)].scatter_(1, order, positions.expand(len(rows), e))
    return ranks


def _removed(fraction: float, elements: int) -> int:
    # the reference code's int(fraction × elements); the epsilon keeps 0.3 × 100 at 30
    return math.floor(fraction * elements + 1e-9)


def _modified(x: Tensor, ranks: Tensor, k: int, fill: Tensor, map_shape: torch.Size) -> Tensor:
    """``x`` with the ``k`` top-ranked elements of each image replaced by ``fill``."""
    mask = (ranks < k).reshape(len(x), *map_shape)
    return torch.where(mask, fill, x)


# ------------------------------------------------------------------------- attributions


def attribution_maps(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    method: str | Method,
    *,
    target: str = "predicted",
    seed: int = 0,
    chunk_size: int = 500,
    batch_size: int | None = None,
    absolute: bool = False,
) -> Tensor:
    """The maps :func:`roar` ranks: ``(N, C', H, W)`` maps of ``method`` at input
    resolution (CAMs upsampled bilinearly), ``|map|`` when ``absolute``, computed
    ``chunk_size`` images per ``explain`` call of which only the maps are kept. Image
    ``i`` draws its random numbers from ``seed + i``, as in one call. ``target``:
    ``"predicted"`` or ``"label"`` (then ``y`` gives the classes)."""
    device = model_device(model) or x.device
    maps = []
    for start in range(0, len(x), chunk_size):
        rows = x[start : start + chunk_size].to(device)
        labels = y[start : start + chunk_size].to(device) if target == "label" else None
        ex = explain(model, rows, method, target=labels, seed=seed + start, batch_size=batch_size)
        values = ex.to_input_size().attributions.detach().to(x.device)
        maps.append(values.abs() if absolute else values)
    return torch.cat(maps)


def _check_maps(name: str, maps: Tensor, x: Tensor, which: str) -> Tensor:
    if not isinstance(maps, Tensor) or maps.dim() != 4:
        raise InvalidInputError(
            f"maps[{name!r}] {which} must be a tensor (N, C, H, W); got "
            f"{tuple(maps.shape) if isinstance(maps, Tensor) else type(maps).__name__}"
        )
    n, c, h, w = x.shape
    if len(maps) != n or maps.shape[2:] != (h, w) or maps.shape[1] not in (1, c):
        raise InvalidInputError(
            f"maps[{name!r}] {which} have shape {tuple(maps.shape)}; the images are "
            f"{tuple(x.shape)}: give one map per image, with 1 or {c} channels, {h}×{w}"
        )
    return maps.detach().to(x.device)


# ----------------------------------------------------------------------------- training


def _cuda_devices() -> list[int]:
    return list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []


def _retrain(
    make_model: Callable[[], nn.Module],
    x: Tensor,
    y: Tensor,
    *,
    seed: int,
    forbidden: nn.Module | None,
    train: Mapping[str, Any],
) -> nn.Module:
    """A fresh model from ``make_model`` trained on ``(x, y)``; the global RNG is seeded
    with ``seed`` for the initialisation and training, and restored afterwards."""
    with torch.random.fork_rng(devices=_cuda_devices()):
        torch.manual_seed(seed)
        model = make_model()
        _check_fresh(model, forbidden)
        model.to(x.device)
        train_classifier(model, x, y, seed=seed, **train)
    return model


def _check_fresh(model: object, forbidden: nn.Module | None) -> None:
    if not isinstance(model, nn.Module):
        raise InvalidInputError(
            f"make_model() must return a torch.nn.Module, got {type(model).__name__}"
        )
    if forbidden is None:
        return
    theirs = {id(p) for p in forbidden.parameters()}
    if model is forbidden or any(id(p) in theirs for p in model.parameters()):
        raise InvalidInputError(
            "make_model() returned the explained model (or one sharing its parameters); "
            "it must build a fresh, untrained model each call, e.g. make_model=MyNet"
        )


def _correct(model: nn.Module, x: Tensor, y: Tensor, batch_size: int = 1000) -> Tensor:
    """``(N,)`` bool: whether ``model`` classifies each row of ``x`` as ``y``."""
    device = model_device(model) or x.device
    out = []
    with torch.no_grad():
        for start in range(0, len(x), batch_size):
            logits = model(x[start : start + batch_size].to(device))
            out.append((logits.argmax(dim=1) == y[start : start + batch_size].to(device)).cpu())
    return torch.cat(out)


# ------------------------------------------------------------------------------ checks


def _check_data(train_x: Tensor, train_y: Tensor, test_x: Tensor, test_y: Tensor) -> None:
    for name, x in (("train_x", train_x), ("test_x", test_x)):
        if not isinstance(x, Tensor) or x.dim() != 4 or not x.dtype.is_floating_point:
            raise InvalidInputError(
                f"{name} must be a floating-point tensor (N, C, H, W), got "
                f"{tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__}"
            )
    for name, y, x in (("train_y", train_y, train_x), ("test_y", test_y, test_x)):
        if not isinstance(y, Tensor) or y.dim() != 1 or y.dtype != torch.long:
            raise InvalidInputError(f"{name} must be a 1-D int64 tensor of class indices")
        if len(y) != len(x):
            raise InvalidInputError(
                f"{name} has {len(y)} labels for {len(x)} images; give one label per image"
            )
    if train_x.shape[1:] != test_x.shape[1:]:
        raise InvalidInputError(
            f"train_x images are {tuple(train_x.shape[1:])} but test_x images are "
            f"{tuple(test_x.shape[1:])}; both must have the same (C, H, W)"
        )
    if len(train_x) < 1 or len(test_x) < 2:
        raise InvalidInputError("need at least 1 training image and 2 test images")


def _check_fractions(fractions: Sequence[float], elements: int) -> tuple[float, ...]:
    values = tuple(float(f) for f in fractions)
    if not values:
        raise InvalidOptionError("fractions is empty; give e.g. (0.1, 0.3, 0.5, 0.7, 0.9)")
    bad = [f for f in values if not 0 < f < 1]
    if bad:
        raise InvalidOptionError(
            f"fractions must lie strictly between 0 and 1 (the share of each image's "
            f"elements removed), got {bad}"
        )
    if len(set(values)) != len(values):
        raise InvalidOptionError(f"fractions repeat a value: {values}")
    empty = [f for f in values if _removed(f, elements) == 0]
    if empty:
        raise InvalidOptionError(
            f"fractions {empty} remove no element of a {elements}-element image; use larger ones"
        )
    return values


def _check_seeds(seeds: Sequence[int]) -> tuple[int, ...]:
    values = tuple(seeds)
    if not values or any(not isinstance(s, int) or isinstance(s, bool) for s in values):
        raise InvalidOptionError(f"seeds must be a non-empty sequence of integers, got {seeds!r}")
    if len(set(values)) != len(values):
        raise InvalidOptionError(f"seeds repeat a value: {values}")
    return values


def _method_table(
    methods: Sequence[str | Method] | Mapping[str, str | Method],
) -> dict[str, Method]:
    items = (
        list(methods.items())
        if isinstance(methods, Mapping)
        else [(m if isinstance(m, str) else m.name, m) for m in methods]
    )
    table: dict[str, Method] = {}
    for label, method in items:
        if label == RANDOM:
            raise InvalidOptionError(
                f"{RANDOM!r} is the control ranking every run includes; do not list it"
            )
        if label in table:
            raise InvalidOptionError(
                f"method {label!r} is listed twice; give a mapping {{label: method}} to run "
                "one method with different options"
            )
        table[label] = make_method(method)
    return table


def _fill(baseline: str | float, train_x: Tensor) -> Tensor:
    if isinstance(baseline, str):
        if baseline != "mean":
            raise InvalidOptionError(f"unknown baseline {baseline!r} (valid: 'mean' or a number)")
        return train_x.mean(dim=(0, 2, 3), keepdim=True)[0]
    if isinstance(baseline, bool) or not isinstance(baseline, (int, float)):
        raise InvalidOptionError(f"baseline must be 'mean' or a number, got {baseline!r}")
    return torch.full((train_x.shape[1], 1, 1), float(baseline), dtype=train_x.dtype)


# -------------------------------------------------------------------------------- roar


def roar(
    make_model: Callable[[], nn.Module],
    train_x: Tensor,
    train_y: Tensor,
    test_x: Tensor,
    test_y: Tensor,
    methods: Sequence[str | Method] | Mapping[str, str | Method] = (),
    *,
    explain_model: nn.Module | None = None,
    maps: Mapping[str, tuple[Tensor, Tensor]] | None = None,
    fractions: Sequence[float] = (0.1, 0.3, 0.5, 0.7, 0.9),
    seeds: Sequence[int] = (0, 1, 2),
    epochs: int = 3,
    batch_size: int = 128,
    lr: float = 1e-3,
    baseline: str | float = "mean",
    absolute: bool = False,
    target: str = "predicted",
    attribution_seed: int = 0,
    chunk_size: int = 500,
    explain_batch_size: int | None = None,
    reference: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> RoarResult:
    """Remove and retrain: each method's ranking against a random ranking.

    Parameters
    ----------
    make_model : callable
        ``make_model()`` builds a fresh, untrained model (called once per retraining,
        under a forked global RNG seeded with the retraining seed).
    train_x, train_y, test_x, test_y : Tensor
        Images ``(N, C, H, W)`` preprocessed as the models expect, and int64 labels.
        Never modified.
    methods : sequence or mapping
        Attribution methods by name or as configured :class:`Method` objects
        (``make_method("integrated_gradients", rule="gausslegendre", steps=16)``); a
        mapping ``{label: method}`` names them (needed for one method with several
        option sets). The random ranking :data:`RANDOM` is always added.
    explain_model : nn.Module
        The trained model (eval mode) whose attributions rank the pixels, as in the
        paper; needed when ``methods`` is not empty. It is never modified: every
        retraining uses a new model from ``make_model``.
    maps : mapping, optional
        Precomputed rankings ``{label: (train_maps, test_maps)}``, one map per image
        ``(N, 1 or C, H, W)``, higher = more important (e.g. an oracle or another
        library's maps).
    fractions : sequence of float
        Shares of each image's elements to remove, each in (0, 1).
    seeds : sequence of int
        Retraining seeds; each cell is retrained once per seed. Seed ``s`` also breaks
        ties in every ranking and draws the random ranking (common random numbers, so
        the comparison with random is paired).
    epochs, batch_size, lr
        For :func:`~seethrough.models.training.train_classifier` (Adam, cross-entropy).
    baseline : "mean" or float
        The value removed elements get: the training images' per-channel mean (the
        paper's choice) or a constant.
    absolute : bool
        Rank by ``|map|`` (default False: signed values, as the reference code).
    target : {"predicted", "label"}
        The class each image is explained for: the explained model's prediction (as in
        the reference code) or the true label.
    attribution_seed : int
        ``seed`` of the attribution calls (SmoothGrad noise, …): image ``i`` of the
        training set draws from ``attribution_seed + i``, of the test set likewise.
    chunk_size : int
        Images per ``explain`` call; of each call only the maps are kept.
    explain_batch_size : int, optional
        ``batch_size`` of ``explain`` (rows per pass; ``None`` adapts to memory).
    reference : bool
        Also train one model per seed on the unmodified data.
    progress : callable, optional
        ``progress(trainings_done, trainings_planned)``.

    Returns
    -------
    RoarResult

    Raises
    ------
    InvalidInputError
        Shapes or dtypes that do not fit, or ``make_model`` returning the explained model.
    InvalidOptionError
        Fractions outside (0, 1), no seeds, unknown methods, options or targets.

    Notes
    -----
    Memory: at most one method's maps ``(N, C', H, W)`` and its int32 ranks are held at
    a time, plus one modified copy of the training and test images.
    """
    started = time.perf_counter()
    _check_data(train_x, train_y, test_x, test_y)
    table = _method_table(methods)
    given = _check_given_maps(maps, table, train_x, test_x)
    _check_run(table, explain_model, target, chunk_size, epochs)
    pixels = train_x.shape[2] * train_x.shape[3]
    cells = _Cells(
        make_model=make_model,
        explain_model=explain_model,
        fractions=_check_fractions(fractions, pixels),
        seeds=_check_seeds(seeds),
        fill=_fill(baseline, train_x).to(train_x.device, train_x.dtype),
        train={"epochs": epochs, "batch_size": batch_size, "lr": lr},
        labels=(*table, *given, RANDOM),
        data=(train_x, train_y, test_x, test_y),
        reference=reference,
        progress=progress,
    )
    source = _MapSource(
        explain_model=explain_model,
        table=table,
        given=given,
        target=target,
        seed=attribution_seed,
        chunk_size=chunk_size,
        batch_size=explain_batch_size,
        absolute=absolute,
    )
    seconds = _rank_and_retrain(cells, source)
    return RoarResult(
        methods=cells.labels,
        fractions=cells.fractions,
        removed=tuple(_removed(f, pixels) for f in cells.fractions),
        seeds=cells.seeds,
        correct=cells.correct,
        reference_correct=cells.reference_correct(),
        unretrained_correct=cells.unretrained,
        settings=MappingProxyType(_settings(cells, source, baseline)),
        attribution_seconds=MappingProxyType(seconds),
        seconds=time.perf_counter() - started,
        versions=library_versions(),
    )


def _rank_and_retrain(cells: _Cells, source: _MapSource) -> dict[str, float]:
    """Retrain every ranking's cells, one ranking's maps at a time; return the seconds
    each ranking's maps took."""
    seconds: dict[str, float] = {}
    for m, label in enumerate(cells.labels):
        t0 = time.perf_counter()
        train_maps, test_maps = source.maps(label, cells.data)
        seconds[label] = time.perf_counter() - t0
        cells.run_ranking(m, train_maps, test_maps)
    return seconds


def _settings(cells: _Cells, source: _MapSource, baseline: str | float) -> dict[str, Any]:
    """Everything that defines the run (:attr:`RoarResult.settings`)."""
    return {
        **cells.train,
        "baseline": baseline if isinstance(baseline, str) else float(baseline),
        "absolute": source.absolute,
        "target": source.target,
        "attribution_seed": source.seed,
        "n_train": len(cells.data[0]),
        "n_test": len(cells.data[2]),
        "method_settings": {label: _describe(method) for label, method in source.table.items()},
    }


def _check_run(
    table: Mapping[str, Method],
    explain_model: nn.Module | None,
    target: str,
    chunk_size: int,
    epochs: int,
) -> None:
    if table and explain_model is None:
        raise InvalidOptionError("methods need explain_model=, the trained model to explain")
    if target not in TARGETS:
        raise InvalidOptionError(f"unknown target {target!r} (valid: {', '.join(TARGETS)})")
    for name, value in (("chunk_size", chunk_size), ("epochs", epochs)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise InvalidOptionError(f"{name} must be a positive integer, got {value!r}")


@dataclass(frozen=True)
class _MapSource:
    """Where each ranking's maps come from: a method explaining ``explain_model``
    (:func:`attribution_maps` with these options), maps given, or none (the random
    ranking)."""

    explain_model: nn.Module | None
    table: Mapping[str, Method]
    given: Mapping[str, tuple[Tensor, Tensor]]
    target: str
    seed: int
    chunk_size: int
    batch_size: int | None
    absolute: bool

    def maps(
        self, label: str, data: tuple[Tensor, Tensor, Tensor, Tensor]
    ) -> tuple[Tensor, Tensor]:
        """The training and test maps that rank the elements for ``label``."""
        train_x, train_y, test_x, test_y = data
        pairs = ((train_x, train_y), (test_x, test_y))
        if label in self.table:
            train, test = (self._explained(self.table[label], x, y) for x, y in pairs)
        elif label in self.given:
            train, test = (v.abs() if self.absolute else v for v in self.given[label])
        else:  # the random ranking: a constant map, all ties broken by the seed
            train, test = (x.new_zeros(len(x), 1, *x.shape[2:]) for x, _ in pairs)
        return train, test

    def _explained(self, method: Method, x: Tensor, y: Tensor) -> Tensor:
        assert self.explain_model is not None  # checked by _check_run
        return attribution_maps(
            self.explain_model,
            x,
            y,
            method,
            target=self.target,
            seed=self.seed,
            chunk_size=self.chunk_size,
            batch_size=self.batch_size,
            absolute=self.absolute,
        )


def _check_given_maps(
    maps: Mapping[str, tuple[Tensor, Tensor]] | None,
    table: Mapping[str, Method],
    train_x: Tensor,
    test_x: Tensor,
) -> dict[str, tuple[Tensor, Tensor]]:
    checked = {}
    for label, pair in (maps or {}).items():
        if label == RANDOM or label in table:
            raise InvalidOptionError(f"maps label {label!r} is taken; choose another")
        a = _check_maps(label, pair[0], train_x, "train_maps")
        b = _check_maps(label, pair[1], test_x, "test_maps")
        if a.shape[1] != b.shape[1]:
            raise InvalidInputError(f"maps[{label!r}] train and test maps differ in channels")
        checked[label] = (a, b)
    return checked


@dataclass
class _Cells:
    """The retrainings of one run and their per-image results (mutable, internal)."""

    make_model: Callable[[], nn.Module]
    explain_model: nn.Module | None
    fractions: tuple[float, ...]
    seeds: tuple[int, ...]
    fill: Tensor
    train: Mapping[str, Any]
    labels: tuple[str, ...]
    data: tuple[Tensor, Tensor, Tensor, Tensor]
    reference: bool
    progress: Callable[[int, int], None] | None
    done: int = 0
    correct: Tensor = field(init=False)
    unretrained: Tensor | None = field(init=False)

    def __post_init__(self) -> None:
        shape = (len(self.labels), len(self.fractions), len(self.seeds), len(self.data[2]))
        self.correct = torch.zeros(shape, dtype=torch.bool)
        explained = self.explain_model is not None
        self.unretrained = torch.zeros_like(self.correct) if explained else None

    @property
    def planned(self) -> int:
        cells = len(self.labels) * len(self.fractions) * len(self.seeds)
        return cells + (len(self.seeds) if self.reference else 0)

    def _tick(self) -> None:
        self.done += 1
        if self.progress is not None:
            self.progress(self.done, self.planned)

    def _retrain(self, x: Tensor, y: Tensor, seed: int) -> nn.Module:
        return _retrain(
            self.make_model, x, y, seed=seed, forbidden=self.explain_model, train=self.train
        )

    def run_ranking(self, m: int, train_maps: Tensor, test_maps: Tensor) -> None:
        """Retrain every fraction × seed of ranking ``m`` given its maps."""
        train_x, train_y, test_x, test_y = self.data
        shape = train_maps.shape[1:]
        counts = [_removed(f, shape.numel()) for f in self.fractions]
        for s, seed in enumerate(self.seeds):
            generator = torch.Generator().manual_seed(seed)
            ranks = [
                tie_broken_ranks(v.reshape(len(v), -1), generator) for v in (train_maps, test_maps)
            ]
            for f, k in enumerate(counts):
                x_test = _modified(test_x, ranks[1], k, self.fill, shape)
                model = self._retrain(
                    _modified(train_x, ranks[0], k, self.fill, shape), train_y, seed
                )
                self.correct[m, f, s] = _correct(model, x_test, test_y)
                if self.unretrained is not None and self.explain_model is not None:
                    with guarded(self.explain_model, [x_test.device]):
                        self.unretrained[m, f, s] = _correct(self.explain_model, x_test, test_y)
                logger.info(
                    "roar %s fraction %g seed %d: accuracy %.4f",
                    self.labels[m],
                    self.fractions[f],
                    seed,
                    float(self.correct[m, f, s].double().mean()),
                )
                self._tick()

    def reference_correct(self) -> Tensor | None:
        """Retrain once per seed on the unmodified data (when asked)."""
        if not self.reference:
            return None
        train_x, train_y, test_x, test_y = self.data
        out = torch.zeros(len(self.seeds), len(test_x), dtype=torch.bool)
        for s, seed in enumerate(self.seeds):
            out[s] = _correct(self._retrain(train_x, train_y, seed), test_x, test_y)
            self._tick()
        return out


def _describe(method: Method) -> dict[str, Any]:
    """A method's name and options as JSON-friendly values."""

    def plain(value: Any) -> Any:
        if isinstance(value, Mapping):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, (tuple, list)):
            return [plain(v) for v in value]
        return value if isinstance(value, (int, float, str, bool, type(None))) else str(value)

    return {"name": method.name, **plain(dict(method.settings))}

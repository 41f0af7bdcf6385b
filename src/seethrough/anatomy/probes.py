"""Linear probes (surrogate tasks): what does a layer's output encode, linearly?

:func:`collect_activations` streams a layer's output over a dataset, one chunk at a time,
keeping only the features a probe needs (at most ``max_features`` per image: the output
itself when it is that small, else average-pooled to the largest square grid that fits).
:func:`fit_probe` trains a multinomial logistic regression (standardised features, L2
penalty, full-batch L-BFGS — deterministic) and reports held-out accuracy.
:func:`probe_layers` does this for several layers with two baselines (Alain & Bengio
2016): the same probe on the raw pixels, and on the same layers of a randomly
initialised copy of the network.

Labels may be the classes themselves or any surrogate attribute
(:func:`surrogate_labels`, e.g. upper- vs lower-body garments).

A dataset too large for memory is given as an :class:`~seethrough.data.ImageSource` of
model inputs (:func:`seethrough.core.datasets.model_source`: a folder of class
subfolders, a CSV/Parquet list, Fashion-MNIST) instead of a tensor: it is streamed in
batches and only the features are kept — memory ``O(N × max_features)``, never
``O(N × C × H × W)``. Each probe reads the source once (``2·layers + 1`` passes with the
baselines), so only one layer's features are held at a time. Unreadable images are
skipped, counted (``ProbeTable.skipped``) and logged.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..core.budget import Budget
from ..core.datasets import stream
from ..core.guard import guarded, unwrap_model
from ..core.hooks import HookSet
from ..core.layers import find_layer
from ..core.reinit import reinitialize
from ..core.stats import holm, paired_test
from ..data.sources import ImageSource
from ..errors import InvalidInputError, InvalidOptionError, LayerError
from ..words import Description
from .ablation import DEFAULT_ROWS, check_labelled, model_device

__all__ = [
    "MAX_FEATURES",
    "Probe",
    "ProbeTable",
    "SourceActivations",
    "collect_activations",
    "fit_probe",
    "paired_p_value",
    "probe_layers",
    "random_copy",
    "source_activations",
    "surrogate_labels",
]

log = logging.getLogger(__name__)

MAX_FEATURES = 4096
PIXELS = "pixels"
"""The layer name that stands for the raw input in :func:`probe_layers`."""


@dataclass(frozen=True, eq=False)
class Probe:
    """A fitted linear probe: ``weight`` ``(classes, F)`` and ``bias`` act on features
    standardised with ``mean``/``std``; accuracies on the fitting and held-out rows;
    ``chance`` is the held-out frequency of the most common training label.
    ``test_correct`` ``(test_size,)``: whether each held-out row was classified right,
    and ``test_index`` the rows' indices in the features given (None when held-out
    features were passed separately) — for intervals over rows, and paired tests
    between probes on the same rows."""

    weight: Tensor
    bias: Tensor
    mean: Tensor
    std: Tensor
    train_accuracy: float
    test_accuracy: float
    chance: float
    features: int
    train_size: int
    test_size: int
    test_correct: Tensor | None = None
    test_index: Tensor | None = None

    def predict(self, features: Tensor) -> Tensor:
        """Class indices for ``(n, F)`` raw (unstandardised) features."""
        z = (features.to(self.weight) - self.mean) / self.std
        return (z @ self.weight.T + self.bias).argmax(dim=1)

    def direction(self) -> Tensor:
        """For a two-class probe, the unit normal of its boundary in the *raw* feature
        space (pointing to class 1) — a concept activation vector."""
        if self.weight.shape[0] != 2:
            raise InvalidOptionError("direction() needs a two-class probe")
        w = (self.weight[1] - self.weight[0]) / self.std
        return w / w.norm().clamp_min(torch.finfo(w.dtype).tiny)


def holm_family_map(p_values: Mapping[str, float | None]) -> dict[str, float | None]:
    """Holm-adjusted p-values (:func:`seethrough.core.stats.holm`) of the entries that
    are not None, over their number; None entries stay None."""
    tested = [k for k, p in p_values.items() if p is not None]
    adjusted = dict(zip(tested, holm([p_values[k] for k in tested]), strict=True))  # type: ignore[misc]
    return {k: adjusted.get(k) for k in p_values}


def paired_p_value(a: Probe, b: Probe, seed: int = 0) -> float | None:
    """Two-sided p-value that probes ``a`` and ``b`` are equally accurate on the same
    held-out rows: a sign-flip test of the per-row differences of being right
    (:func:`seethrough.core.stats.paired_test`, exact up to 16 rows, 10,000 seeded flips
    beyond). None when the two were not measured on the same rows."""
    if a.test_correct is None or b.test_correct is None:
        return None
    if a.test_index is None or b.test_index is None or not torch.equal(a.test_index, b.test_index):
        return None
    right_a = a.test_correct.double().cpu().numpy()
    return paired_test(right_a, b.test_correct.double().cpu().numpy(), seed=seed)


@dataclass(frozen=True, eq=False)
class ProbeTable:
    """Held-out probe accuracy per layer, on the trained network and on a randomly
    initialised copy, with the raw-pixel baseline (``pixels``)."""

    layers: tuple[str, ...]
    trained: tuple[Probe, ...]
    random: tuple[Probe, ...] | None
    pixels: Probe | None
    seed: int
    seconds: float
    skipped: int = 0
    """Images of a source that could not be read (left out of every probe); 0 for tensors."""

    def p_values(self) -> dict[str, float | None]:
        """Per layer, :func:`paired_p_value` of the trained network's probe against the
        random network's (None without random-network probes)."""
        if not self.random:
            return dict.fromkeys(self.layers)
        pairs = zip(self.layers, self.trained, self.random, strict=True)
        return {name: paired_p_value(t, r) for name, t, r in pairs}

    def p_values_holm(self) -> dict[str, float | None]:
        """:meth:`p_values` Holm-corrected over the layers that have one (a table tests
        every layer, so "this layer beats the random network" is one claim of a family);
        None where the raw p-value is None."""
        return holm_family_map(self.p_values())

    def describe(self, lang: str = "en") -> Description:
        """Each layer's probe accuracy against the random network's, in words
        (:func:`seethrough.anatomy.describe.describe_probes`)."""
        from .describe import describe_probes

        return describe_probes(self, lang)


def surrogate_labels(labels: Tensor, groups: Mapping[str, Sequence[int]]) -> Tensor:
    """Relabel classes into surrogate groups: ``groups`` maps a group's name to the
    classes it holds; group ``g`` (in the mapping's order) becomes label ``g``. Every
    class present in ``labels`` must belong to exactly one group."""
    lookup: dict[int, int] = {}
    for g, members in enumerate(groups.values()):
        for c in members:
            if c in lookup:
                raise InvalidOptionError(f"class {c} is in two surrogate groups")
            lookup[int(c)] = g
    missing = sorted({int(c) for c in labels.unique().tolist()} - set(lookup))
    if missing:
        raise InvalidOptionError(
            f"classes {missing} belong to no surrogate group; add them to one "
            "(e.g. an 'other' group)"
        )
    table = torch.full((max(lookup) + 1,), -1, dtype=torch.long)
    for c, g in lookup.items():
        table[c] = g
    return table[labels.cpu().long()].to(labels.device)


def _features(output: Tensor, max_features: int | None) -> Tensor:
    """``(n, F)`` with ``F ≤ max_features``: the flattened output, or average-pooled to
    the largest square grid that fits (``None``: always the flattened output)."""
    flat = output.reshape(len(output), -1)
    if max_features is None or flat.shape[1] <= max_features:
        return flat
    if output.dim() != 4:
        raise InvalidOptionError(
            f"the output has {flat.shape[1]} features per image and no spatial grid "
            f"to pool; raise max_features above it"
        )
    side = max(1, math.isqrt(max_features // output.shape[1]))
    side = min(side, output.shape[2], output.shape[3])
    return F.adaptive_avg_pool2d(output, side).reshape(len(output), -1)


def collect_activations(
    model: nn.Module | Any,
    inputs: Tensor | ImageSource,
    layer: str,
    *,
    max_features: int | None = MAX_FEATURES,
    batch_size: int | None = None,
) -> Tensor:
    """``(N, F)`` features of ``layer``'s output (``"pixels"``: of the inputs), streamed
    chunk by chunk (module docstring); float32 on the inputs' device. ``max_features=None``
    keeps the whole flattened output (as TCAV needs).

    ``inputs`` may be an ``ImageSource`` of model inputs: it is read in batches of
    ``batch_size`` (default 256) onto the model's device; the rows are its readable
    images in order (unreadable ones are skipped with a logged warning — see
    :func:`source_activations` for their labels and count)."""
    if isinstance(inputs, ImageSource):
        return source_activations(
            model, inputs, layer, max_features=max_features, batch_size=batch_size
        ).features
    module = unwrap_model(model, None)[0]
    if layer == PIXELS:
        return torch.cat(
            [
                _features(inputs[a : a + DEFAULT_ROWS].float(), max_features)
                for a in range(0, len(inputs), DEFAULT_ROWS)
            ]
        )
    target = find_layer(module, layer)
    parts: list[Tensor] = []

    def keep(m: nn.Module, args: Any, output: Any) -> None:
        if not isinstance(output, Tensor):
            raise LayerError(f"layer {layer!r} returns {type(output).__name__}, not a tensor")
        # a copy: an in-place op after the layer (ReLU(inplace=True)) would overwrite a view
        parts.append(_features(output.detach(), max_features).to(torch.float32, copy=True))

    def step(start: int, stop: int) -> None:
        with HookSet() as hooks, torch.inference_mode():
            hooks.add(target.register_forward_hook(keep))
            module(inputs[start:stop])

    with guarded(module, [inputs.device]):
        Budget(batch_size or DEFAULT_ROWS, inputs.device).run(len(inputs), step)
    with torch.inference_mode(False):
        return torch.cat(parts).clone()


@dataclass(frozen=True, eq=False)
class SourceActivations:
    """Features of a source's readable images: ``features`` ``(n, F)``, their ``labels``
    ``(n,)`` (``-1`` where the source has none) and source positions ``indices``
    ``(n,)``; ``skipped``: the images that could not be read."""

    features: Tensor
    labels: Tensor
    indices: Tensor
    skipped: int


def source_activations(
    model: nn.Module | Any,
    source: ImageSource,
    layer: str,
    *,
    max_features: int | None = MAX_FEATURES,
    batch_size: int | None = None,
    indices: Sequence[int] | None = None,
) -> SourceActivations:
    """:func:`collect_activations` of a source, streamed: one batch of ``batch_size``
    images (default 256) in memory at a time, on the model's device, each batch's
    features computed exactly as for a tensor of those rows (``indices``: only those
    images, in that order). Unreadable images are skipped, counted and logged.

    Raises
    ------
    InvalidInputError
        No image of the source could be read.
    """
    module = unwrap_model(model, None)[0]
    rows = batch_size or DEFAULT_ROWS
    device = model_device(module)
    parts: list[Tensor] = []
    labels: list[Tensor] = []
    positions: list[Tensor] = []
    failed: list[str] = []
    for batch in stream(source, rows, indices=indices, pin_memory=device.type == "cuda"):
        failed.extend(f"{item.path}: {item.error}" for item in batch.failed)
        if len(batch):
            x = batch.inputs.to(device)
            parts.append(
                collect_activations(module, x, layer, max_features=max_features, batch_size=rows)
            )
            labels.append(batch.labels)
            positions.append(batch.indices)
    if failed:
        log.warning("skipped %d unreadable images, e.g. %s", len(failed), failed[0])
    if not parts:
        size = len(source) if indices is None else len(indices)
        example = f" (e.g. {failed[0]})" if failed else ""
        raise InvalidInputError(
            f"none of the {size} images of {source!r} could be read{example}; check the files"
        )
    return SourceActivations(torch.cat(parts), torch.cat(labels), torch.cat(positions), len(failed))


@dataclass(frozen=True, eq=False)
class _Rows:
    """Fitting rows ``x``/``y`` and held-out rows ``test_x``/``test_y`` of a probe;
    ``test_index``: the held-out rows' indices in the features split (None when the
    held-out rows were given apart)."""

    x: Tensor
    y: Tensor
    test_x: Tensor
    test_y: Tensor
    test_index: Tensor | None


def _split_rows(x: Tensor, y: Tensor, holdout: float, seed: int) -> _Rows:
    """A random (``seed``) share ``holdout`` of the rows held out, at least one row."""
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    cut = len(x) - max(1, round(holdout * len(x)))
    train, test = order[:cut].to(x.device), order[cut:].to(x.device)
    return _Rows(x[train], y[train], x[test], y[test], order[cut:])


def _given_rows(x: Tensor, y: Tensor, test_features: Tensor, test_labels: Tensor) -> _Rows:
    """Every row fits; the held-out rows are given apart (moved to ``x``'s device)."""
    test_x = test_features.detach().float().to(x.device)
    return _Rows(x, y, test_x, test_labels.detach().to(x.device).long(), None)


def _lbfgs(z: Tensor, y: Tensor, classes: int, l2: float, iterations: int) -> tuple[Tensor, Tensor]:
    """Weight ``(classes, F)`` and bias minimising the mean cross-entropy of ``z @ Wᵀ + b``
    + ``l2``·‖W‖²/2 by full-batch L-BFGS (strong Wolfe line search), from zero."""
    weight = torch.zeros(classes, z.shape[1], device=z.device)
    bias = torch.zeros(classes, device=z.device)
    with torch.enable_grad(), torch.inference_mode(False):
        weight.requires_grad_(True)
        bias.requires_grad_(True)
        optimizer = torch.optim.LBFGS(
            [weight, bias],
            max_iter=iterations,
            line_search_fn="strong_wolfe",
            tolerance_grad=1e-7,
            tolerance_change=1e-10,
            history_size=20,
        )

        def closure() -> Tensor:
            optimizer.zero_grad()
            loss = F.cross_entropy(z @ weight.T + bias, y) + 0.5 * l2 * (weight**2).sum()
            loss.backward()
            return loss

        optimizer.step(closure)
    return weight.detach(), bias.detach()


def _measured(fitted: Probe, rows: _Rows) -> Probe:
    """``fitted`` with its accuracies on the fitting and held-out rows, its chance (the
    held-out share of the most common fitting label) and its hit on each held-out row."""
    majority = int(torch.bincount(rows.y, minlength=len(fitted.bias)).argmax())
    correct = (fitted.predict(rows.test_x) == rows.test_y).cpu()
    return replace(
        fitted,
        train_accuracy=float((fitted.predict(rows.x) == rows.y).double().mean()),
        test_accuracy=float(correct.double().mean()),
        chance=float((rows.test_y == majority).double().mean()),
        test_correct=correct,
        test_index=rows.test_index,
    )


def fit_probe(
    features: Tensor,
    labels: Tensor,
    *,
    holdout: float = 0.25,
    l2: float = 1e-2,
    iterations: int = 100,
    seed: int = 0,
    test_features: Tensor | None = None,
    test_labels: Tensor | None = None,
) -> Probe:
    """Fit a multinomial logistic-regression probe and measure it on held-out rows.

    The rows are split at random (``seed``) into a fitting part and a held-out share
    ``holdout`` — unless ``test_features``/``test_labels`` are given. Features are
    standardised with the fitting part's mean and std; the loss is the mean
    cross-entropy + ``l2``·‖W‖²/2, minimised by L-BFGS (strong Wolfe line search).
    """
    if features.dim() != 2 or len(features) != len(labels):
        raise InvalidInputError(
            f"features must be (N, F) with one label each; got {tuple(features.shape)} and "
            f"{len(labels)} labels"
        )
    if not 0 < holdout < 1:
        raise InvalidOptionError(f"holdout must be in (0, 1), got {holdout!r}")
    x = features.detach().float()
    y = labels.detach().to(x.device).long()
    if test_features is None:
        rows = _split_rows(x, y, holdout, seed)
    else:
        assert test_labels is not None
        rows = _given_rows(x, y, test_features, test_labels)
    classes = int(max(int(rows.y.max()), int(rows.test_y.max()))) + 1
    mean = rows.x.mean(dim=0)
    std = rows.x.std(dim=0).clamp_min(1e-6)
    weight, bias = _lbfgs((rows.x - mean) / std, rows.y, classes, l2, iterations)
    fitted = Probe(
        weight, bias, mean, std, 0.0, 0.0, 0.0, x.shape[1], len(rows.x), len(rows.test_x)
    )
    return _measured(fitted, rows)


def random_copy(model: nn.Module, seed: int = 0) -> nn.Module:
    """A copy of ``model`` with every module's parameters re-initialised by its own
    ``reset_parameters`` (and normalisation statistics reset), from ``seed``, by
    :func:`~seethrough.core.reinit.reinitialize`; the global RNG (CPU and CUDA) is
    untouched."""
    clone = copy.deepcopy(model)
    reinitialize(clone, seed=seed, reset_running_stats=True)
    return clone


def probe_layers(
    model: nn.Module | Any,
    inputs: Tensor | ImageSource,
    labels: Tensor | None,
    layers: Sequence[str],
    *,
    baselines: bool = True,
    max_features: int = MAX_FEATURES,
    holdout: float = 0.25,
    l2: float = 1e-2,
    seed: int = 0,
    batch_size: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ProbeTable:
    """Probe accuracy per layer (module docstring), with the raw-pixel and
    random-network baselines when ``baselines``. Every probe uses the same split.

    ``inputs`` is a tensor ``(N, C, H, W)`` with ``labels`` ``(N,)``, or an
    ``ImageSource`` of labelled model inputs with ``labels=None``: streamed once per
    probe, its readable images are the rows (the same rows, split and probes as a tensor
    of those images gives); ``skipped`` counts the unreadable ones.
    """
    started = time.perf_counter()
    module = unwrap_model(model, None)[0]
    rows = _labelled_rows(inputs, labels, module, batch_size)
    if not layers:
        raise InvalidOptionError("no layer to probe; name at least one")
    for name in layers:
        find_layer(module, name)
    random_net = random_copy(module, seed).eval() if baselines else None
    total = len(layers) * (2 if baselines else 1) + (1 if baselines else 0)
    done = 0

    def probe(net: nn.Module, name: str) -> Probe:
        nonlocal done
        feats, y = rows.features(net, name, max_features)
        result = fit_probe(feats, y, holdout=holdout, l2=l2, seed=seed)
        done += 1
        if progress is not None:
            progress(done, total)
        return result

    trained = tuple(probe(module, name) for name in layers)
    random = tuple(probe(random_net, name) for name in layers) if random_net else None
    pixels = probe(module, PIXELS) if baselines else None
    return ProbeTable(
        tuple(layers),
        trained,
        random,
        pixels,
        seed,
        time.perf_counter() - started,
        skipped=rows.skipped,
    )


class _TensorRows:
    """A labelled tensor dataset's features, layer by layer."""

    skipped = 0

    def __init__(self, x: Tensor, y: Tensor, batch_size: int | None) -> None:
        self.x, self.y, self.batch_size = x, y, batch_size

    def features(self, net: nn.Module, layer: str, max_features: int) -> tuple[Tensor, Tensor]:
        feats = collect_activations(
            net, self.x, layer, max_features=max_features, batch_size=self.batch_size
        )
        return feats, self.y


class _SourceRows:
    """A labelled source's features, layer by layer, streamed (module docstring); the
    labels and the unreadable count come from the first pass, and every later pass must
    read the same images."""

    def __init__(self, source: ImageSource, batch_size: int | None) -> None:
        self.source, self.batch_size = source, batch_size
        self.y: Tensor | None = None
        self.skipped = 0

    def features(self, net: nn.Module, layer: str, max_features: int) -> tuple[Tensor, Tensor]:
        found = source_activations(
            net, self.source, layer, max_features=max_features, batch_size=self.batch_size
        )
        if self.y is None:
            if bool((found.labels < 0).any()):
                raise InvalidInputError(
                    f"{self.source!r} has no labels; a probe needs one class per image — "
                    "give a folder of class subfolders, or a list file with a label column"
                )
            self.y, self.skipped = found.labels, found.skipped
        elif not torch.equal(found.labels, self.y):
            raise InvalidInputError(
                f"{self.source!r} gave other images on a second reading; a source read "
                "several times must be stable (files changed during the run?)"
            )
        return found.features, self.y.to(found.features.device)


def _labelled_rows(
    inputs: Any, labels: Any, module: nn.Module, batch_size: int | None
) -> _TensorRows | _SourceRows:
    """The rows to probe: a checked labelled tensor, or a source (``labels`` must be None)."""
    if isinstance(inputs, ImageSource):
        if labels is not None:
            raise InvalidInputError(
                "labels= is for tensor inputs; an image source has its own labels (pass "
                "labels=None)"
            )
        return _SourceRows(inputs, batch_size)
    x, y = check_labelled(inputs, labels, module)
    return _TensorRows(x, y, batch_size)

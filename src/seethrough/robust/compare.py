"""Do robust models explain better? A comparison study of several models on the same images.

:func:`compare` measures, for every model, how well it classifies the images and how well
each image lines up with the gradient of its class margin (:func:`alignment`, Etmann et
al., 2019); and for every model × attribution method the explanation metrics the library
already has, on the same images and the same classes (each image's *true* class):

=====================  =========================================================  =========
measure                what                                                       summary
=====================  =========================================================  =========
``clean_accuracy``     fraction of the images classified correctly                mean
``alignment``          ``|⟨x, ∇Ψ⟩| / (‖x‖‖∇Ψ‖)``, :func:`alignment`               median
``edge_ssim``          SSIM of the map with the image's Sobel edges               median
                       (``trust.ssim``, ``trust.sobel_edges``)
``edge_spearman``      Spearman's ρ of the absolute map with the edges            median
                       (``trust.spearman``; the sanity checks' measure)
``deletion``           deletion AUC (``trust.faithfulness.deletion``)             mean
``insertion``          insertion AUC (``trust.faithfulness.insertion``)           mean
``max_sensitivity``    ``trust.faithfulness.max_sensitivity``, ball in pixels     median
``sanity_final``       Spearman ρ of the absolute maps after the whole cascade    median
                       of model randomization (``trust.model_randomization``)
``recognised``         share of the class-logit activation-maximisation images   Clopper–
                       an independent ``judge`` assigns to their class            Pearson
=====================  =========================================================  =========

Every summary carries a percentile bootstrap interval over the images (``resamples``
draws from ``seed``; ``recognised``: the exact binomial interval). The study reuses the
public functions of :mod:`seethrough.trust`, :mod:`seethrough.inside` and
:mod:`seethrough.attribution` with their own definitions and defaults; nothing is
re-implemented here.

Cost. The expensive parts run on a subset, each stated in the settings: the sanity
cascade on the first ``sanity_images`` images (default ``min(N, 16)``: each cascade step
re-explains with every method, and the per-step medians of 16 images already show whether
a method's maps follow the weights, which is all the curve is for), max-sensitivity on the
first ``sensitivity_images`` (default ``min(N, 32)``: each image costs
``sensitivity_samples`` = 10 further explanations: with 64 images this part took about
half of a 200-image study of two Fashion CNNs, and the median of 32 images still has a
bootstrap interval of about ±11 % there), and one activation-maximisation image per
class (``am_per_class``; 256 Adam steps each, about 6 s for ten 28-pixel classes on one
CPU thread). Accuracy, alignment, edge similarity, deletion and insertion use every image.

Units. The models must share their preprocessing (the study refuses models whose known
preprocessing differs): ``x`` is in that preprocessing's units. Alignment and the
max-sensitivity ball are in pixel units ([0, 1], through the normalisation) when the
preprocessing is known (a ``LoadedModel``), else in the models' input units.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from scipy import stats
from torch import Tensor, nn

from ..attribution import Method, explain, make_method
from ..attribution.explanation import Explanation
from ..core.budget import Budget
from ..core.guard import check_inputs, guarded, unwrap_model
from ..core.passes import forward_logits
from ..core.stats import bootstrap_ci
from ..core.targets import logits_of
from ..errors import InvalidInputError, InvalidOptionError, TargetError
from ..inside import class_logit, maximize
from ..inside.transforms import Jitter, Rotate, Scale, Transform
from ..trust import method_label, model_randomization, sobel_edges, spearman, ssim
from ..trust.faithfulness import deletion, insertion
from ..trust.faithfulness import max_sensitivity as max_sensitivity_metric
from ..words import Description, Finding, Term, Value, method_term
from .attacks import _margins

__all__ = [
    "METHOD_METRICS",
    "MODEL_METRICS",
    "SPACES",
    "STATISTICS",
    "CompareSettings",
    "Estimate",
    "MethodSummary",
    "ModelSummary",
    "RobustnessComparison",
    "alignment",
    "compare",
]

SPACES: tuple[str, ...] = ("pixels", "input")
"""Where :func:`alignment` takes the image and the gradient: pixels in [0, 1] (through the
preprocessing) or the model's input as given."""
MODEL_METRICS: tuple[str, ...] = ("clean_accuracy", "alignment", "recognised")
"""Measures of a model (:class:`ModelSummary`)."""
METHOD_METRICS: tuple[str, ...] = (
    "edge_ssim",
    "edge_spearman",
    "deletion",
    "insertion",
    "max_sensitivity",
    "sanity_final",
)
"""Measures of a model × method (:class:`MethodSummary`)."""
STATISTICS: Mapping[str, str] = {
    "clean_accuracy": "mean",
    "alignment": "median",
    "recognised": "proportion",
    "edge_ssim": "median",
    "edge_spearman": "median",
    "deletion": "mean",
    "insertion": "mean",
    "max_sensitivity": "median",
    "sanity_final": "median",
}
"""The summary of each measure over the images: the mean where the literature reports
means (accuracy; deletion and insertion AUC, Petsiuk et al.), the median for skewed or
bounded per-image scores."""
HIGHER_IS_BETTER: Mapping[str, bool | None] = {
    "clean_accuracy": True,
    "alignment": True,
    "recognised": True,
    "edge_ssim": None,  # reported, not ranked: an edge detector scores high (Adebayo et al.)
    "edge_spearman": None,
    "deletion": False,
    "insertion": True,
    "max_sensitivity": False,
    "sanity_final": False,  # lower: the map depends more on the weights
}
DEFAULT_METHODS: tuple[str, ...] = ("gradient", "integrated_gradients", "smoothgrad", "grad_cam")
SANITY_IMAGES = 16
SENSITIVITY_IMAGES = 32
FIGURE_IMAGES = 8
SANITY_METRIC = "spearman_abs"
SMALL_IMAGE = 112
"""Images with a side below this many pixels get :data:`SMALL_TRANSFORMS` for activation
maximisation; larger ones Lucent's standard transforms."""
SMALL_TRANSFORMS: tuple[Transform, ...] = (
    Jitter(3),
    Scale(tuple(1 + (i - 5) / 50.0 for i in range(11))),
    Rotate(tuple(float(d) for d in range(-10, 11)) + (0.0,) * 5),
    Jitter(2),
)
"""Lucent's standard transforms for small images (e.g. 28 × 28): no 12-pixel padding (the
model would see an image twice as large) and jitters of 3 and 2 pixels instead of 8 and
4; scale and rotation as Lucent's. Pixels moved in from outside are 0 (black)."""

CompareProgress = Callable[[int, int], None]
"""Called as ``progress(stages_done, stages_total)``; a stage is one part of one model."""


# ------------------------------------------------------------------------------ results


@dataclass(frozen=True)
class Estimate:
    """A summary over ``n`` images (``value``) with its interval ``[low, high]``.

    NaN when there was nothing to summarise (``n == 0``); the bounds are NaN when ``n``
    is below 2 (no interval from one image)."""

    value: float
    low: float
    high: float
    n: int

    def format(self, digits: int = 3) -> str:
        """``"0.412 [0.391, 0.433]"`` (``"n/a"`` for NaN)."""
        low, high = _number(self.low, digits), _number(self.high, digits)
        return f"{_number(self.value, digits)} [{low}, {high}]"

    def to_dict(self) -> dict[str, Any]:
        """JSON form; NaN becomes ``None``."""
        return {
            "value": _json(self.value),
            "low": _json(self.low),
            "high": _json(self.high),
            "n": self.n,
        }


@dataclass(frozen=True, eq=False)
class ModelSummary:
    """One model's measures.

    Attributes
    ----------
    name : str
    clean_accuracy : Estimate
        Fraction of the images classified as their label (mean, bootstrap interval).
    alignment : Estimate
        Median of :func:`alignment` over the images (NaN rows left out).
    alignment_values : Tensor
        ``(N,)`` float64, per image.
    recognised : Estimate or None
        Fraction of the activation-maximisation images the judge assigns to their class
        (exact Clopper–Pearson interval); None without a judge.
    am_images : Tensor or None
        ``(classes · am_per_class, C, H, W)`` class-logit activation-maximisation images in
        the models' input units (row ``c · am_per_class + k`` maximises class ``c``; one
        per class by default); None when not run.
    """

    name: str
    clean_accuracy: Estimate
    alignment: Estimate
    alignment_values: Tensor = field(repr=False)
    recognised: Estimate | None = None
    am_images: Tensor | None = field(default=None, repr=False)


@dataclass(frozen=True, eq=False)
class MethodSummary:
    """One model × method's measures (None: not computed).

    ``sanity_curve`` is the median Spearman ρ of the absolute maps with the trained
    model's maps, first for a second run on the trained model (1 for a deterministic
    method; a stochastic method's noise floor), then after each step of the randomization
    cascade (logits first); ``sanity_layers`` names those points (``"original"``, then the
    steps); ``sanity_final`` is the last point with its interval.
    """

    model: str
    method: str
    edge_ssim: Estimate
    edge_spearman: Estimate
    deletion: Estimate | None = None
    insertion: Estimate | None = None
    max_sensitivity: Estimate | None = None
    sanity_curve: tuple[float, ...] | None = None
    sanity_layers: tuple[str, ...] | None = None
    sanity_final: Estimate | None = None


@dataclass(frozen=True)
class CompareSettings:
    """How :func:`compare` ran.

    ``sanity_images``, ``sensitivity_images`` are the sizes of the subsets those parts ran
    on (the first images; None: not run). ``sensitivity_radius`` is the max-sensitivity
    ball's half-width in pixel units (in input units when ``preprocess`` is None) and
    ``sensitivity_radius_input`` the value the metric received. ``statistics`` names each
    measure's summary (:data:`STATISTICS`).
    """

    n: int
    methods: tuple[str, ...]
    seed: int
    resamples: int
    level: float
    alignment_space: str
    preprocess: str | None
    sanity_images: int | None
    sanity_granularity: str
    faithfulness: bool
    faithfulness_steps: int
    deletion_baseline: str
    insertion_baseline: str
    sensitivity_images: int | None
    sensitivity_radius: float
    sensitivity_radius_input: float
    sensitivity_samples: int
    activation_maximization: bool
    am_steps: int
    am_per_class: int
    am_transforms: str
    judge: str | None
    figure_images: int
    statistics: Mapping[str, str]
    seconds: float = 0.0


@dataclass(frozen=True, eq=False)
class RobustnessComparison:
    """The outcome of :func:`compare`.

    Attributes
    ----------
    models : tuple of ModelSummary
    methods : tuple of MethodSummary
        One per model × method, models outer.
    method_names : tuple of str
        The methods' labels (:func:`seethrough.trust.method_label`), in order.
    maps : dict
        ``(model, method) → (K, C, H, W)`` maps of the first ``K = min(N, 8)`` images at
        input resolution (raw, float32, CPU), for figures.
    inputs : Tensor
        Those ``K`` images ``(K, C, H, W)``, in input units.
    settings : CompareSettings
    """

    models: tuple[ModelSummary, ...]
    methods: tuple[MethodSummary, ...]
    method_names: tuple[str, ...]
    maps: Mapping[tuple[str, str], Tensor] = field(repr=False)
    inputs: Tensor = field(repr=False)
    settings: CompareSettings

    def model(self, name: str) -> ModelSummary:
        """The :class:`ModelSummary` called ``name``."""
        for m in self.models:
            if m.name == name:
                return m
        names = ", ".join(m.name for m in self.models)
        raise InvalidOptionError(f"no model {name!r} in this study (models: {names})")

    def method(self, model: str, method: str) -> MethodSummary:
        """The :class:`MethodSummary` of ``model`` × ``method``."""
        self.model(model)
        for row in self.methods:
            if row.model == model and row.method == method:
                return row
        valid = ", ".join(self.method_names)
        raise InvalidOptionError(f"no method {method!r} in this study (methods: {valid})")

    def estimate(self, model: str, method: str | None, metric: str) -> Estimate:
        """One measure: a model's (:data:`MODEL_METRICS`; ``method`` is not needed) or a
        model × method's (:data:`METHOD_METRICS`).

        Raises
        ------
        InvalidOptionError
            An unknown model, method or metric, or a measure that was not computed.
        """
        if metric in MODEL_METRICS:
            found = getattr(self.model(model), metric)
        elif metric in METHOD_METRICS:
            if method is None:
                raise InvalidOptionError(f"{metric} is measured per method; name the method")
            found = getattr(self.method(model, method), metric)
        else:
            valid = ", ".join((*MODEL_METRICS, *METHOD_METRICS))
            raise InvalidOptionError(f"unknown metric {metric!r} (valid: {valid})")
        if found is None:
            raise InvalidOptionError(
                f"{metric} was not computed in this study (switched off, or no judge given)"
            )
        return found

    def table(self) -> str:
        """A markdown table, one row per model × method, each cell ``value [low, high]``."""
        s = self.settings
        head = (
            f"n = {s.n} images; {s.level:.0%} bootstrap intervals ({s.resamples} resamples); "
            "edge, max-sensitivity and sanity: medians; accuracy, deletion, insertion: means; "
            "recognised: share with exact binomial interval."
        )
        columns = [
            "model",
            "method",
            "accuracy",
            "alignment",
            "edge SSIM",
            "edge Spearman",
            "deletion ↓",
            "insertion ↑",
            "max-sensitivity ↓",
            "sanity ρ after cascade ↓",
            "AM recognised",
        ]
        lines = [head, "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        for row in self.methods:
            m = self.model(row.model)
            cells = [row.model, row.method, *_cells(m, row)]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: the settings and every estimate (NaN → None); every number of
        :meth:`table` and :meth:`describe` is in it. Maps and images are left out."""
        return {
            "settings": _settings_dict(self.settings),
            "method_names": list(self.method_names),
            "models": [_model_dict(m) for m in self.models],
            "methods": [_method_dict(r) for r in self.methods],
        }

    def describe(self) -> Description:
        """The findings in words (English and Chinese: ``.text("zh")``)."""
        return Description("robustness comparison", tuple(_findings(self)))


# ---------------------------------------------------------------------------- alignment


def alignment(
    model: nn.Module | Any,
    x: Tensor,
    labels: Tensor | Sequence[int],
    *,
    space: str = "pixels",
    preprocess: Any = None,
    batch_size: int | None = None,
) -> Tensor:
    """Alignment of each image with the gradient of its class margin (Etmann et al.).

    ``|⟨x, ∇ₓΨ(x)⟩| / (‖x‖ ‖∇ₓΨ(x)‖)`` with ``Ψ = logit_y − max_{j≠y} logit_j``: the
    absolute cosine between the image and the saliency map of the margin, from 0
    (orthogonal) to 1 (parallel). For a bias-free linear model,
    ``alignment · ‖x‖ = |Ψ(x)| / ‖∇Ψ‖`` is the distance from ``x`` to the boundary
    between ``y`` and the runner-up class — the distance to the decision boundary when
    that boundary is the nearest (always, for two classes): Etmann et al.'s link between
    robustness and interpretability.

    Parameters
    ----------
    model : nn.Module or LoadedModel
        In eval mode.
    x : Tensor
        ``(N, C, H, W)`` in the model's input units (preprocessed).
    labels : Tensor or sequence of int
        ``(N,)`` each image's class ``y``.
    space : {"pixels", "input"}
        ``"pixels"`` (default): the image and the gradient in pixel units — ``x`` mapped
        back through the normalisation (``x · std + mean``, not clipped) and the gradient
        taken with respect to those pixels (chain rule: ``∇ₓΨ / std``), so that 0 is a
        black image for every model. Needs the normalisation: a ``LoadedModel`` or
        ``preprocess``. ``"input"``: the model's input as given.
    preprocess : Preprocess, optional
        Anything with per-channel ``mean`` and ``std`` (overrides a ``LoadedModel``'s).
    batch_size : int, optional
        Rows per pass.

    Returns
    -------
    Tensor
        ``(N,)`` float64 on the CPU; NaN where ``x`` or the gradient is zero.

    Raises
    ------
    InvalidOptionError
        An unknown ``space``, or ``"pixels"`` without a known normalisation.
    InvalidInputError, TargetError
        Bad inputs; labels of the wrong length or out of range.
    ModelStateError
        The model is in training mode.

    Notes
    -----
    Etmann, Lunz, Maass & Schönlieb (2019), "On the Connection Between Adversarial
    Robustness and Saliency Map Interpretability", ICML. The paper defines the
    *binarized* classifier ``Ψⁱ = Ψ_i − max_{j≠i} Ψ_j``, its gradient as the saliency map,
    and the alignment ``α(x) = |⟨x, ∇Ψ^{i*}(x)⟩| / ‖∇Ψ^{i*}(x)‖``. Deviations:

    * **divided by ‖x‖**: we report the cosine, which does not grow with the image's
      brightness and so compares images and models on one scale; ``alignment · ‖x‖`` is
      the paper's ``α`` (in the units of ``space``);
    * **y is the true label**, not the predicted class ``i*``: the same for correctly
      classified images; for a misclassified one ``Ψ < 0`` and the boundary is the one it
      has already crossed;
    * the paper's code (``robust_model.py``) logs the signed cosine between the image and
      the gradient of the true class's *logit*; we follow the paper's binarized margin and
      absolute value.
    """
    module, _, known = unwrap_model(model)
    space = _check_space(space)
    pre = preprocess if preprocess is not None else known
    x = check_inputs(x, module)
    y = _check_labels(labels, len(x))
    stats_ = _pixel_stats(pre, x) if space == "pixels" else None
    if space == "pixels" and stats_ is None:
        raise InvalidOptionError(
            "space='pixels' needs the model's normalisation: pass a LoadedModel "
            "(st.load_model), preprocess=net.preprocess, or use space='input'"
        )
    grads = _margin_gradients(module, x, y, batch_size)
    return _cosine(x, grads, stats_)


def _check_space(space: Any) -> str:
    if space not in SPACES:
        raise InvalidOptionError(f"unknown space {space!r} (valid: {', '.join(SPACES)})")
    return str(space)


def _check_labels(labels: Any, n: int) -> Tensor:
    """``(n,)`` int64 CPU class indices (not yet checked against the class count)."""
    if not isinstance(labels, Tensor):
        try:
            labels = torch.as_tensor(labels)
        except (TypeError, ValueError, RuntimeError):
            raise TargetError(
                f"labels must be a 1-D tensor or sequence of class indices, got {labels!r}"
            ) from None
    if labels.dim() != 1 or labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise TargetError(
            f"labels must be a 1-D tensor of integer class indices, got {labels.dtype} with "
            f"shape {tuple(labels.shape)}"
        )
    if len(labels) != n:
        raise TargetError(
            f"{len(labels)} labels for {n} images; give one class index per image (labels[i] "
            "is the true class of x[i])"
        )
    if n and int(labels.min()) < 0:
        raise TargetError(f"labels must be class indices ≥ 0, got {int(labels.min())}")
    return labels.detach().to("cpu", torch.int64)


def _check_classes(labels: Tensor, classes: int) -> None:
    if len(labels) and int(labels.max()) >= classes:
        raise TargetError(
            f"label {int(labels.max())} is out of range: the model has {classes} classes "
            f"(valid: 0 to {classes - 1})"
        )
    if classes < 2:
        raise InvalidInputError(
            f"the model has {classes} output; a class margin needs at least two classes"
        )


def _pixel_stats(pre: Any, x: Tensor) -> tuple[Tensor, Tensor] | None:
    """Per-channel ``(mean, std)`` ``(1, C, 1, 1)`` of the normalisation, or None."""
    if pre is None:
        return None
    mean = torch.tensor(list(pre.mean), dtype=torch.float64)
    std = torch.tensor(list(pre.std), dtype=torch.float64)
    if len(mean) != x.shape[1] or len(std) != x.shape[1]:
        raise InvalidInputError(
            f"inputs have {x.shape[1]} channels but the preprocessing has {len(mean)}; "
            "preprocess the images with net.preprocess"
        )
    return mean.view(1, -1, 1, 1), std.view(1, -1, 1, 1)


def _margin_gradients(module: nn.Module, x: Tensor, y: Tensor, batch_size: int | None) -> Tensor:
    """``∇ₓ(logit_y − max_{j≠y} logit_j)`` per row, in chunks, under the guard."""
    budget = Budget(batch_size, x.device)
    parts: list[Tensor] = []
    target = y.to(x.device)

    def step(start: int, stop: int) -> None:
        rows = x[start:stop].detach().clone().requires_grad_(True)
        logits = logits_of(module(rows))
        _check_classes(y, logits.shape[1])
        margin = _margins(logits, target[start:stop])  # the attacks' Ψ, one definition
        (grad,) = torch.autograd.grad(margin.sum(), rows)
        parts.append(grad.detach())

    with guarded(module, [x.device]):
        budget.run(len(x), step)
    return torch.cat(parts)


def _cosine(x: Tensor, grads: Tensor, pixel: tuple[Tensor, Tensor] | None) -> Tensor:
    """``|⟨p, g⟩| / (‖p‖‖g‖)`` per row in float64, ``p``/``g`` in pixel units if given."""
    p, g = x.detach().double().cpu(), grads.double().cpu()
    if pixel is not None:
        mean, std = pixel
        p, g = p * std + mean, g / std
    p, g = p.flatten(1), g.flatten(1)
    return (p * g).sum(dim=1).abs() / (p.norm(dim=1) * g.norm(dim=1))


# ------------------------------------------------------------------------------ compare


@dataclass(frozen=True)
class _Entry:
    """One model of the study."""

    name: str
    model: Any
    module: nn.Module
    preprocess: Any


@dataclass(frozen=True)
class _Plan:
    """Everything :func:`compare` resolved before running (internal)."""

    methods: list[str | Method]
    labels: tuple[str, ...]
    shared: Any  # the models' preprocessing, or None
    pixel: tuple[Tensor, Tensor] | None
    settings: CompareSettings
    judge: Any
    batch_size: int | None


def compare(
    models: Sequence[nn.Module | Any],
    x: Tensor,
    labels: Tensor | Sequence[int],
    *,
    methods: Sequence[str | Method] = DEFAULT_METHODS,
    names: Sequence[str] | None = None,
    judge: nn.Module | Any = None,
    sanity: bool = True,
    sanity_images: int | None = None,
    faithfulness: bool = True,
    max_sensitivity: bool = True,
    sensitivity_images: int | None = None,
    sensitivity_radius: float = 0.05,
    sensitivity_samples: int = 10,
    activation_maximization: bool = True,
    am_steps: int = 256,
    am_per_class: int = 1,
    resamples: int = 2000,
    level: float = 0.95,
    seed: int = 0,
    batch_size: int | None = None,
    progress: CompareProgress | None = None,
) -> RobustnessComparison:
    """Compare models' interpretability on the same images (module docstring).

    Parameters
    ----------
    models : sequence of nn.Module or LoadedModel
        At least one, in eval mode, taking the same inputs: the preprocessing of the
        ``LoadedModel`` s must be equal (plain modules are taken to share it).
    x : Tensor
        ``(N, C, H, W)`` in the models' input units.
    labels : Tensor or sequence of int
        ``(N,)`` the true class of each image; every method explains it.
    methods : sequence of str or Method
        Attribution methods (registered names or configured objects), each once; they run
        with their own defaults.
    names : sequence of str, optional
        One per model (default: a ``LoadedModel``'s name, else ``"model i"``); unique.
    judge : nn.Module or LoadedModel, optional
        An independent classifier of the same classes that rates the activation-
        maximisation images (``recognised``); it receives them normalised with its own
        preprocessing (a ``LoadedModel``) or the models'.
    sanity, faithfulness, max_sensitivity, activation_maximization : bool
        Which parts run (all by default).
    sanity_images : int, optional
        The cascade runs on the first ``min(N, sanity_images)`` images (default 16;
        ``trust.model_randomization`` with granularity ``"block"``, Spearman ρ of
        absolute maps, with its self-check).
    sensitivity_images : int, optional
        Max-sensitivity runs on the first ``min(N, sensitivity_images)`` (default 32).
    sensitivity_radius : float
        Half-width of the max-sensitivity box in pixel units (default 0.05, the smallest
        training ε of the zoo's robust Fashion CNNs: every robust model was trained
        against such a change). Converted to input units by dividing by the
        normalisation's std (by the largest std when channels differ: a box inside the
        pixel box); in input units when the preprocessing is unknown.
    sensitivity_samples : int
        Noise draws per image (default 10, the metric's own default).
    am_steps, am_per_class : int
        Activation maximisation (``inside.maximize`` of ``inside.class_logit(c)``, Fourier
        parametrisation, Adam lr 0.05, seeded ``seed + row``): steps (default 256, the
        library's default) and images per class (default 1). Transforms: Lucent's
        standard ones, or :data:`SMALL_TRANSFORMS` below 112 pixels.
    resamples, level, seed
        Bootstrap draws (default 2000), interval level, and the seed of every random
        choice (explanations, ties, noise, bootstrap, activation maximisation).
    batch_size : int, optional
        Rows per pass.
    progress : callable, optional
        ``progress(stages_done, stages_total)`` after each part of each model.

    Returns
    -------
    RobustnessComparison

    Raises
    ------
    InvalidInputError
        No models, models with different preprocessing, bad inputs, a bad judge.
    InvalidOptionError
        Unknown or repeated methods, bad names or counts, a bad level.
    TargetError
        Labels of the wrong length or out of range.
    ModelStateError
        A model in training mode.

    Notes
    -----
    Choices and deviations, each stated where it matters:

    * no ``study.plot()`` (the issue's sketch): figures live in :mod:`seethrough.viz`
      (``viz.plot_comparison``), which sits above this package;
    * edges are the Sobel magnitude of ``x`` in input units, as the sanity check
      ``trust.edge_similarity`` takes them (per channel the pixel edges times ``1/std``);
    * deletion and insertion keep the library's baselines: deletion fills with zeros *in
      input units* (the mean pixel of a normalised model, not black), insertion starts
      from a blurred copy (Petsiuk et al.'s choice); 50 steps;
    * the sanity curve starts from the self-check (a second run on the trained model,
      Adebayo et al. compare with the original itself): 1 for deterministic methods, the
      noise floor for stochastic ones;
    * with channels of different std, the max-sensitivity box is the largest input-space
      cube inside the pixel box (``radius / max(std)``), narrower than ``radius`` in the
      other channels.
    """
    started = time.perf_counter()
    entries = _check_models(models, names)
    x = _check_data(entries, x)
    y = _check_labels(labels, len(x))
    plan = _plan(entries, x, judge, methods, batch_size, locals())
    stages = len(entries) * _stages(plan.settings)
    done = 0
    summaries: list[ModelSummary] = []
    rows: list[MethodSummary] = []
    maps: dict[tuple[str, str], Tensor] = {}

    def tick() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, stages)

    for entry in entries:
        summary, mine, figures = _study(entry, x, y, plan, tick)
        summaries.append(summary)
        rows.extend(mine)
        maps.update(figures)
    settings = replace(plan.settings, seconds=time.perf_counter() - started)
    return RobustnessComparison(
        models=tuple(summaries),
        methods=tuple(rows),
        method_names=plan.labels,
        maps=maps,
        inputs=x[: settings.figure_images].detach().cpu(),
        settings=settings,
    )


def _stages(s: CompareSettings) -> int:
    optional = (s.sensitivity_images, s.sanity_images)
    return 3 + sum(v is not None for v in optional) + int(s.activation_maximization)


def _check_models(models: Any, names: Sequence[str] | None) -> list[_Entry]:
    if isinstance(models, nn.Module) or hasattr(models, "module"):
        raise InvalidInputError(
            "models must be a list of models; wrap a single one: compare([net], x, labels)"
        )
    models = list(models)
    if not models:
        raise InvalidInputError("no model given; pass a list of at least one model")
    if names is not None and (isinstance(names, str) or len(names) != len(models)):
        raise InvalidOptionError(
            f"names must be a list of {len(models)} names (one per model), got {names!r}"
        )
    entries = []
    for i, model in enumerate(models):
        module, _, pre = unwrap_model(model)
        default = getattr(model, "name", None) if pre is not None else None
        name = str(names[i]) if names is not None else (default or f"model {i}")
        entries.append(_Entry(name, model, module, pre))
    seen = [e.name for e in entries]
    repeated = sorted({n for n in seen if seen.count(n) > 1})
    if repeated:
        raise InvalidOptionError(
            f"model names {repeated} repeat; give each model its own name with names=[...]"
        )
    return entries


def _check_data(entries: list[_Entry], x: Tensor) -> Tensor:
    checked = check_inputs(x, entries[0].module)
    for e in entries:
        check_inputs(x, e.module)
        _check_eval(e.module)
    return checked


def _check_eval(module: nn.Module) -> None:
    """Refuse a model in training mode before the long work, not after it."""
    with guarded(module):
        pass


def _shared_preprocess(entries: list[_Entry]) -> Any:
    known = [e for e in entries if e.preprocess is not None]
    for e in known[1:]:
        if e.preprocess != known[0].preprocess:
            raise InvalidInputError(
                f"the models take differently preprocessed inputs — {known[0].name}: "
                f"{known[0].preprocess.describe()}; {e.name}: {e.preprocess.describe()} — and "
                "x can only be in one; compare models that share their preprocessing"
            )
    return known[0].preprocess if known else None


def _check_methods(methods: Sequence[str | Method]) -> tuple[list[str | Method], tuple[str, ...]]:
    if isinstance(methods, (str, Method)):
        methods = [methods]
    methods = list(methods)
    if not methods:
        raise InvalidOptionError("no method given; name at least one (e.g. 'gradient')")
    for m in methods:
        make_method(m)  # unknown names are refused here, with close matches
    labels = tuple(method_label(m) for m in methods)
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise InvalidOptionError(f"methods {repeated} are given more than once; list each once")
    return methods, labels


def _count(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidOptionError(f"{name} must be a positive integer, got {value!r}")
    return value


def _subset(name: str, value: Any, default: int, n: int, enabled: bool) -> int | None:
    """How many of the first images a part runs on (None: switched off)."""
    if not enabled:
        return None
    return min(n, default if value is None else _count(name, value))


def _radius(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise InvalidOptionError(f"sensitivity_radius must be a positive number, got {value!r}")
    if not math.isfinite(value):
        raise InvalidOptionError(f"sensitivity_radius must be finite, got {value!r}")
    return float(value)


def _plan(
    entries: list[_Entry],
    x: Tensor,
    judge: Any,
    methods: Sequence[str | Method],
    batch_size: int | None,
    given: Mapping[str, Any],
) -> _Plan:
    """Check the options and resolve the settings."""
    method_list, labels = _check_methods(methods)
    shared = _shared_preprocess(entries)
    pixel = _pixel_stats(shared, x)
    level = given["level"]
    if isinstance(level, bool) or not isinstance(level, (int, float)) or not 0 < level < 1:
        raise InvalidOptionError(f"level must be in (0, 1), got {level!r}")
    seed = given["seed"]
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise InvalidOptionError(f"seed must be an integer, got {seed!r}")
    radius = _radius(given["sensitivity_radius"])
    judge_name = _judge_name(judge)
    n = len(x)
    settings = CompareSettings(
        n=n,
        methods=labels,
        seed=seed,
        resamples=_count("resamples", given["resamples"]),
        level=float(level),
        alignment_space="pixels" if pixel is not None else "input",
        preprocess=shared.describe() if shared is not None else None,
        sanity_images=_subset(
            "sanity_images", given["sanity_images"], SANITY_IMAGES, n, bool(given["sanity"])
        ),
        sanity_granularity="block",
        faithfulness=bool(given["faithfulness"]),
        faithfulness_steps=50,
        deletion_baseline="zeros",
        insertion_baseline="blur",
        sensitivity_images=_subset(
            "sensitivity_images",
            given["sensitivity_images"],
            SENSITIVITY_IMAGES,
            n,
            bool(given["max_sensitivity"]),
        ),
        sensitivity_radius=radius,
        sensitivity_radius_input=radius / float(pixel[1].max()) if pixel is not None else radius,
        sensitivity_samples=_count("sensitivity_samples", given["sensitivity_samples"]),
        activation_maximization=bool(given["activation_maximization"]),
        am_steps=_count("am_steps", given["am_steps"]),
        am_per_class=_count("am_per_class", given["am_per_class"]),
        am_transforms="small" if min(x.shape[2:]) < SMALL_IMAGE else "standard",
        judge=judge_name,
        figure_images=min(n, FIGURE_IMAGES),
        statistics=dict(STATISTICS),
    )
    return _Plan(method_list, labels, shared, pixel, settings, judge, batch_size)


def _judge_name(judge: Any) -> str | None:
    if judge is None:
        return None
    module, _, pre = unwrap_model(judge)
    _check_eval(module)
    return str(getattr(judge, "name", "judge")) if pre is not None else type(module).__name__


# --------------------------------------------------------------------------- one model


def _study(
    entry: _Entry, x: Tensor, y: Tensor, plan: _Plan, tick: Callable[[], None]
) -> tuple[ModelSummary, list[MethodSummary], dict[tuple[str, str], Tensor]]:
    """Every measure of one model."""
    s = plan.settings
    logits = _logits(entry.module, x, plan.batch_size)
    _check_classes(y, logits.shape[1])
    correct = (logits.argmax(dim=1).cpu() == y).double()
    align = _cosine(x, _margin_gradients(entry.module, x, y, plan.batch_size), plan.pixel)
    tick()
    explanations = explain(entry.model, x, plan.methods, y, seed=s.seed, batch_size=plan.batch_size)
    tick()
    measures = [_map_measures(entry, ex, plan) for ex in explanations]
    tick()
    if s.sensitivity_images is not None:
        for found, ex in zip(measures, explanations):
            found["max_sensitivity"] = _sensitivity(entry, ex, plan)
        tick()
    curves = _sanity(entry, x, y, plan) if s.sanity_images is not None else None
    if curves is not None:
        tick()
    am_images, recognised = _activation_maximization(entry, x, logits.shape[1], plan)
    if s.activation_maximization:
        tick()
    summary = ModelSummary(
        name=entry.name,
        clean_accuracy=_estimate(correct, "mean", s),
        alignment=_estimate(align, "median", s),
        alignment_values=align,
        recognised=recognised,
        am_images=am_images,
    )
    rows = [
        _method_summary(entry.name, label, found, curves, s)
        for label, found in zip(plan.labels, measures)
    ]
    figures = {
        (entry.name, label): _input_maps(ex)[: s.figure_images].detach().float().cpu()
        for label, ex in zip(plan.labels, explanations)
    }
    return summary, rows, figures


def _logits(module: nn.Module, x: Tensor, batch_size: int | None) -> Tensor:
    with guarded(module, [x.device]):
        return forward_logits(module, lambda a, b: x[a:b], len(x), Budget(batch_size, x.device))


def _input_maps(ex: Explanation) -> Tensor:
    return ex.to_input_size().attributions


def _map_measures(entry: _Entry, ex: Explanation, plan: _Plan) -> dict[str, Tensor]:
    """Per image: edge similarity, and deletion and insertion AUC (if on)."""
    s = plan.settings
    maps = _input_maps(ex)
    edges = sobel_edges(ex.inputs)
    found = {
        "edge_ssim": ssim(edges, maps),
        "edge_spearman": spearman(edges, maps, absolute=True),
    }
    if s.faithfulness:
        steps, seed, rows = s.faithfulness_steps, s.seed, plan.batch_size
        found["deletion"] = deletion(
            entry.module, ex, steps=steps, baseline=s.deletion_baseline, seed=seed, batch_size=rows
        ).scores
        found["insertion"] = insertion(
            entry.module, ex, steps=steps, baseline=s.insertion_baseline, seed=seed, batch_size=rows
        ).scores
    return found


def _head(ex: Explanation, k: int) -> Explanation:
    """The explanation of the first ``k`` images only (rows are seeded ``seed + i``, so
    this equals explaining those images alone)."""
    return ex.replace(
        attributions=ex.attributions[:k],
        inputs=ex.inputs[:k],
        targets=ex.targets[:k],
        scores=ex.scores[:k],
        image_index=ex.image_index[:k],
        predicted=None if ex.predicted is None else ex.predicted[:k],
        nonfinite_rows=tuple(r for r in ex.nonfinite_rows if r < k),
    )


def _sensitivity(entry: _Entry, ex: Explanation, plan: _Plan) -> Tensor:
    s = plan.settings
    assert s.sensitivity_images is not None
    return max_sensitivity_metric(
        entry.module,
        _head(ex, s.sensitivity_images),
        radius=s.sensitivity_radius_input,
        samples=s.sensitivity_samples,
        seed=s.seed,
        batch_size=plan.batch_size,
    ).scores


def _sanity(
    entry: _Entry, x: Tensor, y: Tensor, plan: _Plan
) -> dict[str, tuple[tuple[float, ...], tuple[str, ...], Tensor]]:
    """Per method: the median curve, its point names, and the last step's values."""
    s = plan.settings
    assert s.sanity_images is not None
    k = s.sanity_images
    result = model_randomization(
        entry.model,
        x[:k],
        plan.methods,
        y[:k],
        granularity=s.sanity_granularity,
        seed=s.seed,
        metrics=(SANITY_METRIC,),
        batch_size=plan.batch_size,
    )
    names = ("original", *(step.name for step in result.steps))
    curves = {}
    for label in plan.labels:
        sim = result.similarity(label)
        values = sim.values(SANITY_METRIC)
        first = sim.self_check_values[SANITY_METRIC]
        curve = (_nanmedian(first), *(_nanmedian(row) for row in values))
        curves[label] = (curve, names, values[-1])
    return curves


def _activation_maximization(
    entry: _Entry, x: Tensor, classes: int, plan: _Plan
) -> tuple[Tensor | None, Estimate | None]:
    """Class-logit activation maximisation images (input units) and the judge's rate."""
    s = plan.settings
    if not s.activation_maximization:
        return None, None
    per = s.am_per_class
    objectives = [class_logit(c) for c in range(classes) for _ in range(per)]
    vis = maximize(
        entry.module,
        objectives,
        steps=s.am_steps,
        seed=s.seed,
        size=(int(x.shape[2]), int(x.shape[3])),
        channels=int(x.shape[1]),
        normalize=plan.shared if plan.shared is not None else False,
        transforms=SMALL_TRANSFORMS if s.am_transforms == "small" else "standard",
    )
    pixels = vis.images.to(x.dtype)
    images = _normalise(pixels, plan.pixel)
    if plan.judge is None:
        return images, None
    wanted = torch.arange(classes).repeat_interleave(per)
    return images, _recognised(plan, pixels, wanted, x)


def _normalise(pixels: Tensor, pixel: tuple[Tensor, Tensor] | None) -> Tensor:
    if pixel is None:
        return pixels
    mean, std = pixel
    return ((pixels.double() - mean) / std).to(pixels.dtype)


def _recognised(plan: _Plan, pixels: Tensor, wanted: Tensor, x: Tensor) -> Estimate:
    """The judge's share of images assigned to their class, exact binomial interval."""
    module, _, own = unwrap_model(plan.judge)
    pre = own if own is not None else plan.shared
    if own is not None and (own.size, own.size) != tuple(pixels.shape[2:]):
        raise InvalidInputError(
            f"the judge takes {own.size}×{own.size} images but the models "
            f"{tuple(pixels.shape[2:])}; choose a judge of the same image size"
        )
    inputs = check_inputs(_normalise(pixels, _pixel_stats(pre, x)).to(x.device), module)
    logits = _logits(module, inputs, plan.batch_size)
    if logits.shape[1] <= int(wanted.max()):
        raise InvalidInputError(
            f"the judge has {logits.shape[1]} classes but the models {int(wanted.max()) + 1}; "
            "the judge must classify the same classes"
        )
    hits = int((logits.argmax(dim=1).cpu() == wanted).sum())
    n = len(wanted)
    ci = stats.binomtest(hits, n).proportion_ci(plan.settings.level, method="exact")
    return Estimate(hits / n, float(ci.low), float(ci.high), n)


def _method_summary(
    model: str,
    label: str,
    found: Mapping[str, Tensor],
    curves: Mapping[str, tuple[tuple[float, ...], tuple[str, ...], Tensor]] | None,
    s: CompareSettings,
) -> MethodSummary:
    def est(name: str) -> Estimate | None:
        return _estimate(found[name], STATISTICS[name], s) if name in found else None

    curve = curves[label] if curves is not None else None
    return MethodSummary(
        model=model,
        method=label,
        edge_ssim=_estimate(found["edge_ssim"], "median", s),
        edge_spearman=_estimate(found["edge_spearman"], "median", s),
        deletion=est("deletion"),
        insertion=est("insertion"),
        max_sensitivity=est("max_sensitivity"),
        sanity_curve=curve[0] if curve is not None else None,
        sanity_layers=curve[1] if curve is not None else None,
        sanity_final=_estimate(curve[2], "median", s) if curve is not None else None,
    )


# -------------------------------------------------------------------------- estimates


def _nanmedian(values: Tensor) -> float:
    v = values.double().cpu().numpy()
    v = v[~np.isnan(v)]
    return float(np.median(v)) if len(v) else math.nan


def _estimate(values: Tensor, statistic: str, s: CompareSettings) -> Estimate:
    """``statistic`` ("mean" or "median") of the non-NaN values with its percentile
    bootstrap interval (``core.stats.bootstrap_ci``, ``s.resamples`` draws from ``s.seed``)."""
    v = values.detach().double().cpu().numpy()
    v = v[~np.isnan(v)]
    if len(v) == 0:
        return Estimate(math.nan, math.nan, math.nan, 0)
    if len(v) == 1:
        return Estimate(float(v[0]), math.nan, math.nan, 1)
    fn: Callable[[np.ndarray], float] = (
        (lambda a: float(np.mean(a))) if statistic == "mean" else (lambda a: float(np.median(a)))
    )
    ci = bootstrap_ci(fn, v, level=s.level, resamples=s.resamples, seed=s.seed)
    return Estimate(ci.estimate, ci.low, ci.high, ci.n)


# ---------------------------------------------------------------- table, dict, words


def _number(value: float, digits: int) -> str:
    if math.isnan(value):
        return "n/a"
    return f"{value:.{digits}f}" if abs(value) < 1000 else f"{value:.4g}"


def _json(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


def _cell(e: Estimate | None) -> str:
    return "—" if e is None else e.format()


def _cells(m: ModelSummary, row: MethodSummary) -> list[str]:
    return [
        _cell(m.clean_accuracy),
        _cell(m.alignment),
        _cell(row.edge_ssim),
        _cell(row.edge_spearman),
        _cell(row.deletion),
        _cell(row.insertion),
        _cell(row.max_sensitivity),
        _cell(row.sanity_final),
        _cell(m.recognised),
    ]


def _settings_dict(s: CompareSettings) -> dict[str, Any]:
    out = {k: getattr(s, k) for k in s.__dataclass_fields__}
    out["methods"] = list(s.methods)
    out["statistics"] = dict(s.statistics)
    return out


def _optional(e: Estimate | None) -> dict[str, Any] | None:
    return None if e is None else e.to_dict()


def _model_dict(m: ModelSummary) -> dict[str, Any]:
    r = m.recognised
    return {
        "name": m.name,
        "clean_accuracy": m.clean_accuracy.to_dict(),
        "alignment": m.alignment.to_dict(),
        "alignment_values": [_json(v) for v in m.alignment_values.tolist()],
        "recognised": _optional(r),
        "recognised_count": None if r is None else round(r.value * r.n),
    }


def _method_dict(r: MethodSummary) -> dict[str, Any]:
    out: dict[str, Any] = {"model": r.model, "method": r.method}
    for name in METHOD_METRICS:
        out[name] = _optional(getattr(r, name))
    out["sanity_curve"] = None if r.sanity_curve is None else [_json(v) for v in r.sanity_curve]
    out["sanity_layers"] = None if r.sanity_layers is None else list(r.sanity_layers)
    return out


def _bounds(prefix: str, e: Estimate) -> dict[str, Value]:
    return {f"{prefix}value": e.value, f"{prefix}low": e.low, f"{prefix}high": e.high}


def _findings(study: RobustnessComparison) -> list[Finding]:
    found = [_model_finding(study, i, m) for i, m in enumerate(study.models)]
    if len(study.models) > 1:
        alignment_metric: dict[str, Value] = {}
        pairs = [(m.name, m.alignment) for m in study.models]
        found += _ranking("robust.compare.alignment", pairs, alignment_metric, "models", True)
    for label in study.method_names:
        rows = [r for r in study.methods if r.method == label]
        for metric in METHOD_METRICS:
            ranked = [(r.model, getattr(r, metric)) for r in rows]
            if any(e is None for _, e in ranked):
                continue
            words = {
                "metric": Term(f"robust.compare.metric.{metric}"),
                "method": method_term(label),
            }
            descending = HIGHER_IS_BETTER[metric] is not False
            found += _ranking("robust.compare.rank", ranked, words, "methods", descending)
    for i, m in enumerate(study.models):
        if m.recognised is not None:
            found.append(_recognised_finding(study, i, m, m.recognised))
    if study.methods:
        found.append(Finding("robust.compare.edges", {}, "methods", "note"))
    if len(study.models) > 1:
        found.append(Finding("robust.compare.intervals", {}, "models", "note"))
    return found


def _model_finding(study: RobustnessComparison, i: int, m: ModelSummary) -> Finding:
    a, c = m.alignment, m.clean_accuracy
    values: dict[str, Value] = {
        "model": m.name,
        "accuracy": c.value,
        "accuracy_low": c.low,
        "accuracy_high": c.high,
        "n": c.n,
        "alignment": a.value,
        "alignment_low": a.low,
        "alignment_high": a.high,
        "level": study.settings.level,
        "space": Term(f"robust.space.{study.settings.alignment_space}"),
    }
    usable = not any(math.isnan(v) for v in (a.value, a.low, c.low))
    return Finding("robust.compare.model", values, f"models.{i}", "finding" if usable else "hedged")


def _ranking(
    key: str,
    pairs: list[tuple[str, Estimate]],
    words: Mapping[str, Value],
    evidence: str,
    descending: bool,
) -> list[Finding]:
    """The top two models (``key`` + ``.separated`` when their intervals do not overlap,
    ``.overlap`` when they do); with one model, its value (``robust.compare.single``)."""
    usable = [(n, e) for n, e in pairs if not math.isnan(e.value)]
    if not usable:
        return []
    if len(usable) == 1:
        name, e = usable[0]
        values = {**words, "model": name, **_bounds("", e)}
        return [Finding("robust.compare.single", values, evidence, "note")]
    ranked = sorted(usable, key=lambda p: p[1].value, reverse=descending)
    (first, a), (second, b) = ranked[0], ranked[1]
    apart = a.low > b.high if descending else a.high < b.low
    values = {
        **words,
        "order": Term(f"robust.compare.order.{'highest' if descending else 'lowest'}"),
        "first": first,
        "second": second,
        **_bounds("first_", a),
        **_bounds("second_", b),
    }
    suffix = "separated" if apart else "overlap"
    return [Finding(f"{key}.{suffix}", values, evidence, "finding" if apart else "hedged")]


def _recognised_finding(
    study: RobustnessComparison, i: int, m: ModelSummary, r: Estimate
) -> Finding:
    values: dict[str, Value] = {
        "judge": study.settings.judge or "",
        "model": m.name,
        "k": round(r.value * r.n),
        "n": r.n,
        **_bounds("", r),
        "level": study.settings.level,
    }
    return Finding("robust.compare.recognised", values, f"models.{i}.recognised", "finding")

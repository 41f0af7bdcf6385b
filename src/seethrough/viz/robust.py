"""Figures of the robustness results: an image next to its adversarial version and the
perturbation that separates them (amplified so that it can be seen), robust accuracy
against ε with its confidence intervals, and the comparison study's figures — the same
images' maps side by side across models, alignment against the training ε, and how far
an explanation-fragility attack moves each model's maps."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import Tensor

from ..errors import InvalidInputError, InvalidOptionError, suggest
from .heatmap import colorize, display_images, heat_values, scale_for_display

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from ..robust import Estimate, FragilityResult, RobustnessComparison, RobustnessReport

__all__ = [
    "perturbation_display",
    "plot_adversarial",
    "plot_alignment",
    "plot_class_images",
    "plot_comparison",
    "plot_fragility",
    "plot_robust_accuracy",
]


def perturbation_display(
    inputs: Tensor, adversarial: Tensor, transform: object | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The perturbation of each image, amplified for display.

    The perturbation is ``adversarial − inputs`` in pixel units (through
    ``transform.invert``, a model's preprocessing) or, without a transform, in input
    units. Each image's is divided by its own largest absolute value and shown as
    ``0.5 + 0.5 · δ / max|δ|``: mid-grey is no change, black and white the largest change
    in either direction.

    Returns
    -------
    pictures : ndarray
        ``(N, H, W, 3)`` in [0, 1].
    factors : ndarray
        ``(N,)`` the amplification ``0.5 / max|δ|`` of each picture (0 for an image that
        was not changed).
    """
    if inputs.shape != adversarial.shape or inputs.dim() != 4:
        raise InvalidInputError(
            f"inputs and adversarial must both be (N, C, H, W) of one shape, got "
            f"{tuple(inputs.shape)} and {tuple(adversarial.shape)}"
        )
    x, adv = inputs.detach().float().cpu(), adversarial.detach().float().cpu()
    invert = getattr(transform, "invert", None)
    delta = invert(adv) - invert(x) if invert is not None else adv - x
    if delta.shape[1] == 1:
        delta = delta.expand(-1, 3, -1, -1)
    elif delta.shape[1] != 3:
        delta = delta.mean(dim=1, keepdim=True).expand(-1, 3, -1, -1)
    largest = delta.flatten(1).abs().amax(dim=1)
    factors = torch.where(largest > 0, 0.5 / largest.clamp_min(1e-30), 0.0)
    scaled = 0.5 + delta * factors.view(-1, 1, 1, 1)
    return scaled.clamp(0, 1).permute(0, 2, 3, 1).numpy(), factors.numpy()


def plot_adversarial(
    inputs: Tensor,
    adversarial: Tensor,
    transform: object | None = None,
    *,
    captions: Sequence[tuple[str, str]] | None = None,
    names: Sequence[str] | None = None,
) -> Figure:
    """One row per image: the clean image, the adversarial image and the perturbation
    between them, amplified (:func:`perturbation_display`; the factor is in the title).

    Parameters
    ----------
    inputs, adversarial : Tensor
        ``(N, C, H, W)`` model inputs (e.g. ``AttackResult.adversarial``).
    transform : object, optional
        The model's preprocessing: its ``invert`` turns inputs into pixels (otherwise each
        image is min-max scaled for display).
    captions : sequence of (str, str), optional
        Per image, the titles of the clean and the adversarial picture (e.g. the class
        and its probability).
    names : sequence of str, optional
        Per image, a name shown at the left of its row.
    """
    n = len(inputs)
    if (captions is not None and len(captions) != n) or (names is not None and len(names) != n):
        raise InvalidInputError(f"give one caption and one name per image ({n})")
    clean = display_images(inputs, transform)
    changed = display_images(adversarial, transform)
    delta, factors = perturbation_display(inputs, adversarial, transform)
    figure = Figure(figsize=(7.2, 2.5 * n + 0.2), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(n, 3, squeeze=False)
    for i in range(n):
        titles = captions[i] if captions is not None else ("clean", "adversarial")
        amplified = f"×{factors[i]:.3g}" if factors[i] > 0 else "none"
        panels = [
            (clean[i], titles[0]),
            (changed[i], titles[1]),
            (delta[i], f"perturbation (amplified {amplified})"),
        ]
        for c, (picture, title) in enumerate(panels):
            ax = axes[i][c]
            ax.imshow(picture, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(title, fontsize=7)
        if names is not None:
            axes[i][0].set_ylabel(names[i], fontsize=8)
    return figure


def plot_robust_accuracy(report: RobustnessReport) -> Figure:
    """Accuracy against ε: clean accuracy at ε = 0, robust accuracy under PGD at each ε
    and, where lower, the worst case over every attack run; error bars are the report's
    bootstrap intervals."""
    s = report.settings
    order = np.argsort(report.eps, kind="stable")
    eps = np.array([0.0, *(report.eps[i] for i in order)])
    clean = report.clean_accuracy
    figure = Figure(figsize=(5.6, 3.6), layout="constrained")
    FigureCanvasAgg(figure)
    ax = figure.subplots()
    series = [(f"robust accuracy (PGD-{s.steps})", report.robust_accuracy, "o", "-")]
    if any(
        w.estimate < r.estimate
        for w, r in zip(report.worst_case_accuracy, report.robust_accuracy, strict=True)
    ):
        series.append(("worst case over every attack", report.worst_case_accuracy, "s", "--"))
    for label, intervals, marker, line in series:
        points = [clean, *(intervals[i] for i in order)]
        y = np.array([p.estimate for p in points])
        below = y - np.array([p.low for p in points])
        above = np.array([p.high for p in points]) - y
        ax.errorbar(
            eps,
            y,
            yerr=[below, above],
            marker=marker,
            markersize=4,
            capsize=3,
            linestyle=line,
            label=label,
        )
    ax.axhline(clean.estimate, color="grey", linewidth=0.6, linestyle="--", label="clean")
    norm = "L∞" if s.norm == "linf" else "L²"
    units = "pixel units" if s.eps_space == "pixels" else "input units"
    ax.set_xlabel(f"ε ({norm}, {units})", fontsize=8)
    ax.set_ylabel("accuracy", fontsize=8)
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=7)
    level = f"{clean.level:.0%}"
    ax.set_title(
        f"{report.n} images, {s.restarts} random start(s), {level} bootstrap intervals",
        fontsize=9,
    )
    return figure


# --------------------------------------------------------------------------- compare


def plot_comparison(
    study: RobustnessComparison,
    method: str | None = None,
    *,
    transform: object | None = None,
    display: str = "magnitude",
    percentile: float = 99.5,
) -> Figure:
    """The same images' maps side by side across models: one row per image (the images
    the study kept for figures, ``study.inputs``), the image first, then one column per
    model — for ``method`` only, or for every method (grouped by method, the models side
    by side within each group).

    Each map is reduced over channels (:func:`~seethrough.viz.heat_values`: ``display``
    ``"magnitude"`` sums absolute values, ``"signed"`` sums them) and divided by its own
    ``percentile``-th percentile of absolute values (:func:`~seethrough.viz.scale_for_display`),
    so the colours compare the *shape* of the maps across models, not their scale (a
    robust model's gradients are smaller).

    Parameters
    ----------
    study : RobustnessComparison
        The result of :func:`seethrough.robust.compare`.
    method : str, optional
        One of ``study.method_names``; ``None``: every method.
    transform : object, optional
        The models' preprocessing: its ``invert`` shows the images in pixels (otherwise
        each image is min-max scaled for display).
    display : {"magnitude", "signed"}
    percentile : float
        Per-map display scale, in (0, 100].

    Raises
    ------
    InvalidOptionError
        An unknown method or display.
    """
    methods = list(study.method_names) if method is None else [_method(study, method)]
    models = [m.name for m in study.models]
    columns = [(model, name) for name in methods for model in models]
    pictures = display_images(study.inputs, transform)
    n, size = len(pictures), (int(study.inputs.shape[-2]), int(study.inputs.shape[-1]))
    width = 1.35 * (len(columns) + 1) + 0.4
    figure = Figure(figsize=(width, 1.4 * n + 0.7), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(n, len(columns) + 1, squeeze=False)
    for c, (model, name) in enumerate(columns, start=1):
        values = heat_values(study.maps[(model, name)][:n], display, size)
        scaled, _ = scale_for_display(values, percentile)
        low = -1.0 if display == "signed" else 0.0
        for i in range(n):
            axes[i][c].imshow(colorize(scaled[i].clamp(low, 1).numpy(), display))
        title = model if len(methods) == 1 else f"{model}\n{name}"
        axes[0][c].set_title(title, fontsize=6)
    for i in range(n):
        axes[i][0].imshow(pictures[i], interpolation="nearest")
        axes[i][0].set_ylabel(f"image {i}", fontsize=7)
        for ax in axes[i]:
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0][0].set_title("input", fontsize=6)
    what = methods[0] if len(methods) == 1 else "every method"
    figure.suptitle(
        f"{what}: {display} maps, each scaled to its own {percentile:g}th percentile",
        fontsize=8,
    )
    return figure


def _method(study: RobustnessComparison, method: str) -> str:
    valid = list(study.method_names)
    if method not in valid:
        raise InvalidOptionError(
            f"unknown method {method!r}{suggest(method, valid)} (this study has: "
            f"{', '.join(valid)})"
        )
    return method


def plot_alignment(
    study: RobustnessComparison, eps: Mapping[str, float | None] | None = None
) -> Figure:
    """Etmann et al.'s (2019) alignment of each model — the median over images with its
    bootstrap interval — against the ε the model was adversarially trained at.

    Models with an ε in ``eps`` are drawn at that ε (a plainly trained model at ε = 0,
    joined by a line in order of ε); the others (no ε given, or ``None``: e.g. a
    gradient-regularised model) are shown apart, in a panel of their own at the right.

    Parameters
    ----------
    study : RobustnessComparison
    eps : mapping of model name to float or None, optional
        Each model's training ε (in the units it was trained in, e.g. pixel units).

    Raises
    ------
    InvalidOptionError
        A name in ``eps`` that is not a model of the study, or a negative or non-finite ε.
    """
    names = [m.name for m in study.models]
    given = dict(eps or {})
    for name, value in given.items():
        if name not in names:
            raise InvalidOptionError(
                f"eps names {name!r}, not a model of this study{suggest(name, names)} "
                f"(its models: {', '.join(names)})"
            )
        if value is not None and not (np.isfinite(value) and value >= 0):
            raise InvalidOptionError(f"eps of {name!r} must be a number ≥ 0, got {value}")
    placed = sorted(
        ((float(v), m) for m in study.models if (v := given.get(m.name)) is not None),
        key=lambda pair: pair[0],
    )
    apart = [m for m in study.models if given.get(m.name) is None]
    ratios = [max(len(placed), 2), max(len(apart), 1)] if placed and apart else [1]
    figure = Figure(figsize=(2.2 + 1.1 * len(study.models), 3.6), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, len(ratios), sharey=True, squeeze=False, width_ratios=ratios)[0]
    if placed:
        ax = axes[0]
        x = np.array([e for e, _ in placed])
        _errorbars(ax, x, [m.alignment for _, m in placed], "-")
        for i, (e, m) in enumerate(placed):
            same = sum(1 for f, _ in placed[:i] if f == e)  # stack the names of equal ε
            ax.annotate(m.name, (e, m.alignment.value), fontsize=6, xytext=(4, 4 + 8 * same),
                        textcoords="offset points")  # fmt: skip
        ax.set_xlabel("training ε", fontsize=8)
    if apart:
        ax = axes[-1]
        x = np.arange(len(apart), dtype=float)
        _errorbars(ax, x, [m.alignment for m in apart], "none")
        ax.set_xticks(x, [m.name for m in apart], fontsize=6, rotation=20, ha="right")
        ax.set_xlim(-0.6, len(apart) - 0.4)
        ax.set_xlabel("no training ε" if placed else "model", fontsize=8)
    axes[0].set_ylabel("alignment |⟨x, ∇Ψ⟩| / (‖x‖ ‖∇Ψ‖)", fontsize=8)
    first = study.models[0].alignment
    level = getattr(study.settings, "level", None)
    interval = f"{level:.0%} bootstrap intervals" if level is not None else "bootstrap intervals"
    figure.suptitle(f"median alignment over {first.n} images, {interval}", fontsize=9)
    return figure


def _errorbars(ax: Axes, x: np.ndarray, estimates: Sequence[Estimate], line: str) -> None:
    y = np.array([e.value for e in estimates], dtype=float)
    low = np.array([e.low for e in estimates], dtype=float)
    high = np.array([e.high for e in estimates], dtype=float)
    below, above = np.nan_to_num(y - low), np.nan_to_num(high - y)  # no interval: no bar
    ax.errorbar(x, y, yerr=[below, above], marker="o", markersize=4, capsize=3, linestyle=line)


def plot_fragility(results: FragilityResult | Mapping[str, FragilityResult]) -> Figure:
    """How far the explanation-fragility attack (Ghorbani et al., 2019) moved the maps:
    per model, the top-k intersection and the Spearman rank correlation of each image's
    map before and after the attack, next to the same for random sign perturbations of
    the same ε (when the result has them). Boxes span the quartiles, the line is the
    median, the points are the images; lower means the map moved further.

    Parameters
    ----------
    results : FragilityResult or mapping of model name to FragilityResult
        One model's result, or several (e.g. one per model of a comparison).
    """
    named = {"": results} if not isinstance(results, Mapping) else dict(results)
    if not named:
        raise InvalidInputError("no fragility result to plot")
    figure = Figure(figsize=(2.0 + 1.6 * len(named), 3.6), layout="constrained")
    FigureCanvasAgg(figure)
    panels = figure.subplots(1, 2, squeeze=False)[0]
    metrics = [
        ("top_k_intersection", "random_top_k_intersection", "top-k intersection"),
        ("spearman", "random_spearman", "Spearman rank correlation"),
    ]
    for ax, (field, random_field, label) in zip(panels, metrics, strict=True):
        ticks, labels = [], []
        for i, (name, result) in enumerate(named.items()):
            boxes = [("attack", getattr(result, field), "C3")]
            baseline = getattr(result, random_field)
            if baseline is not None:
                boxes.append(("random", baseline, "C0"))
            for j, (kind, values, colour) in enumerate(boxes):
                position = 3.0 * i + j
                _box(ax, position, np.asarray(values.detach().double().cpu()), colour)
                ticks.append(position)
                labels.append(f"{name}\n{kind}" if name else kind)
        ax.set_xticks(ticks, labels, fontsize=6)
        ax.set_ylabel(label, fontsize=8)
        ax.set_ylim(-1.05 if field == "spearman" else -0.02, 1.05)
    first = next(iter(named.values()))
    figure.suptitle(_fragility_title(first), fontsize=8)
    return figure


def _box(ax: Axes, position: float, values: np.ndarray, colour: str) -> None:
    shown = values[np.isfinite(values)]
    if len(shown) == 0:
        return  # every value NaN (e.g. constant maps): nothing to draw
    ax.boxplot(
        [shown], positions=[position], widths=0.7, showfliers=False,
        medianprops={"color": colour}, boxprops={"color": colour},
    )  # fmt: skip
    spread = np.linspace(-0.15, 0.15, len(shown)) if len(shown) > 1 else np.zeros(1)
    ax.scatter(position + spread, shown, s=4, color=colour, alpha=0.5)


def _fragility_title(result: FragilityResult) -> str:
    s = result.settings
    parts = [f"{len(result.top_k_intersection)} images"]
    for field, text in (("method", "{}"), ("eps", "ε = {:.4g}"), ("top_k", "top-{}")):
        value = getattr(s, field, None)
        if value is not None:
            parts.append(text.format(value))
    space = getattr(s, "eps_space", None)
    if space is not None:
        parts.append("pixel units" if space == "pixels" else "input units")
    return "explanation fragility: " + ", ".join(parts)


def plot_class_images(
    study: RobustnessComparison,
    *,
    transform: object | None = None,
    class_names: Sequence[str] | None = None,
) -> Figure:
    """Each model's class-logit activation-maximisation images (``am_images``): one row
    per model that has them, one column per image (``am_per_class`` per class, in class
    order); shown in pixels through ``transform``
    (the models' preprocessing) or, without it, min-max scaled per image.

    Raises
    ------
    InvalidInputError
        No model of the study has activation-maximisation images.
    """
    rows = [m for m in study.models if m.am_images is not None]
    if not rows:
        raise InvalidInputError(
            "no model of this study has activation-maximisation images; run compare with "
            "activation_maximization=True"
        )
    per_class = max(1, int(getattr(study.settings, "am_per_class", 1)))
    count = max(len(m.am_images) for m in rows if m.am_images is not None)
    width = 1.0 * count + 1.2
    figure = Figure(figsize=(width, 1.15 * len(rows) + 0.6), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(rows), count, squeeze=False)
    for r, m in enumerate(rows):
        assert m.am_images is not None
        pictures = display_images(m.am_images, transform)
        for c in range(count):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c < len(pictures):
                ax.imshow(pictures[c], interpolation="nearest")
            if r == 0:
                cls = c // per_class
                name = class_names[cls] if class_names and cls < len(class_names) else None
                ax.set_title(name or f"class {cls}", fontsize=6)
        axes[r][0].set_ylabel(m.name, fontsize=7)
    each = "one image" if per_class == 1 else f"{per_class} images"
    figure.suptitle(f"class-logit activation maximisation, {each} per class", fontsize=8)
    return figure

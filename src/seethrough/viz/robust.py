"""Figures of the robustness results: an image next to its adversarial version and the
perturbation that separates them (amplified so that it can be seen), and robust accuracy
against ε with its confidence intervals."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import Tensor

from ..errors import InvalidInputError
from .heatmap import display_images

if TYPE_CHECKING:
    from ..robust import RobustnessReport

__all__ = ["perturbation_display", "plot_adversarial", "plot_robust_accuracy"]


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

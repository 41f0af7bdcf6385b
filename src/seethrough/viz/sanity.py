"""Figures of the sanity checks: the paper's grid of maps under randomization, and the
similarity curves with their spread over images."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..errors import InvalidOptionError
from .heatmap import SEQUENTIAL, display_images

if TYPE_CHECKING:
    from ..trust.sanity import RandomizationResult

__all__ = ["METRIC_LABELS", "plot_randomization_grid", "plot_similarity_curves"]

METRIC_LABELS = {
    "spearman_abs": "Spearman rank correlation (absolute maps)",
    "spearman": "Spearman rank correlation (signed maps)",
    "ssim": "SSIM",
    "hog": "Pearson correlation of HOG",
}


def plot_randomization_grid(result: RandomizationResult, image: int = 0) -> Figure:
    """Rows: methods; columns: the input, the trained model's map, then the map after
    each randomization step (the paper's Figure 2). Maps are the absolute reduced maps
    (channel |sum|, 99th-percentile clip), shown on [0, 1]."""
    n = len(result.original_maps[0])
    if not 0 <= image < n:
        raise InvalidOptionError(f"image must be in 0..{n - 1}, got {image}")
    rows, cols = len(result.methods), len(result.steps) + 2
    figure = Figure(figsize=(1.3 * cols, 1.35 * rows + 0.6), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(rows, cols, squeeze=False)
    picture = display_images(result.original[0].inputs[image : image + 1])[0]
    titles = ["input", "trained", *(f"{s.name}" for s in result.steps)]
    for r, method in enumerate(result.methods):
        panels = [result.original_maps[r][image], *(step[r][image] for step in result.maps)]
        for c in range(cols):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.imshow(picture)
                ax.set_ylabel(method, fontsize=7)
            else:
                ax.imshow(panels[c - 1].numpy(), cmap=SEQUENTIAL, vmin=0.0, vmax=1.0)
            if r == 0:
                ax.set_title(titles[c], fontsize=6, rotation=30, ha="left")
    figure.suptitle(f"{result.mode} randomization, logits first (image {image})", fontsize=8)
    return figure


def plot_similarity_curves(result: RandomizationResult, metric: str = "spearman_abs") -> Figure:
    """Mean similarity to the trained model's map after each step, one line per method,
    with a band of ± one standard deviation over images.

    The y-axis spans at least [-0.1, 1.05] (``[-0.5, 1.05]`` for signed Spearman) and
    always the whole of every curve and band, so no value is clipped."""
    if metric not in METRIC_LABELS:
        raise InvalidOptionError(f"unknown metric {metric!r} (valid: {', '.join(METRIC_LABELS)})")
    figure = Figure(figsize=(max(5.0, 0.55 * len(result.steps) + 2.5), 3.6), layout="constrained")
    FigureCanvasAgg(figure)
    ax = figure.subplots()
    x = np.arange(len(result.steps) + 1)
    low, high = (-0.5 if metric == "spearman" else -0.1), 1.05
    for s in result.similarities:
        mean = np.concatenate([[1.0], s.mean(metric).numpy()])
        std = np.nan_to_num(np.concatenate([[0.0], s.std(metric).numpy()]))  # NaN for 1 image
        ax.plot(x, mean, marker="o", markersize=3, label=s.method)
        ax.fill_between(x, mean - std, mean + std, alpha=0.15)
        shown = np.concatenate([mean - std, mean + std])
        shown = shown[np.isfinite(shown)]
        if shown.size:
            low, high = min(low, float(shown.min()) - 0.05), max(high, float(shown.max()) + 0.05)
    ax.set_xticks(
        x, ["trained", *(st.name for st in result.steps)], rotation=45, ha="right", fontsize=7
    )
    ax.set_ylabel(METRIC_LABELS[metric], fontsize=8)
    ax.axhline(0.0, color="grey", linewidth=0.5)
    ax.set_ylim(low, high)
    ax.legend(fontsize=7, ncols=2)
    n = len(result.original_maps[0])
    ax.set_title(f"{result.mode} randomization ({n} image{'' if n == 1 else 's'})", fontsize=9)
    return figure

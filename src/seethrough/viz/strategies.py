"""Figures of dataset-level analysis: SpRAy's strategies and per-class mean maps.

Maps are signed; each is shown on a diverging scale symmetric about zero, scaled to its
own largest magnitude (display only: the results keep the raw numbers).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import Tensor

from ..errors import InvalidInputError

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from ..scale import ClassMaps, SprayResult

__all__ = ["plot_class_maps", "plot_spray"]

SPECTRUM = 16
"""Eigenvalues shown in the spectrum panel (at least the chosen k + 1)."""


def _blank(ax: Axes) -> None:
    ax.set_xticks([])
    ax.set_yticks([])


def _show_map(ax: Axes, values: Tensor) -> None:
    array = np.asarray(values.detach().to("cpu", torch.float64))
    peak = float(np.abs(array).max()) or 1.0
    ax.imshow(array, cmap="bwr", vmin=-peak, vmax=peak, interpolation="nearest")
    _blank(ax)


def _pixels(images: Tensor | Mapping[int, Tensor], row: int) -> np.ndarray:
    try:
        image = images[row]
    except (IndexError, KeyError):
        raise InvalidInputError(
            f"images has no entry for row {row}: give (N, C, H, W) pixels indexed by the "
            "result's rows, or a mapping row → (C, H, W)"
        ) from None
    array = np.asarray(image.detach().to("cpu", torch.float64)).clip(0.0, 1.0)
    if array.ndim != 3:
        raise InvalidInputError(f"an image must be (C, H, W) pixels in [0, 1], got {array.shape}")
    return array[0] if array.shape[0] == 1 else array.transpose(1, 2, 0)


def _cluster_label(cluster: Any) -> str:
    text = f"cluster {cluster.id}\n{cluster.size} maps ({cluster.share:.0%})"
    if cluster.accuracy is not None:
        text += f"\nacc {cluster.accuracy.estimate:.0%}"
        if cluster.rest_accuracy is not None:
            text += f" (rest {cluster.rest_accuracy:.0%})"
    if cluster.confidence is not None:
        text += f"\nconf {cluster.confidence.estimate:.2f}"
    if cluster.differs:
        text += "\ndiffers from the rest"
    return text


def _spectrum(ax: Axes, result: SprayResult) -> None:
    count = min(len(result.eigenvalues), max(SPECTRUM, result.eigengap + 2))
    values = np.asarray(result.eigenvalues[:count])
    positions = np.arange(1, count + 1)
    ax.plot(positions, values, "o-", color="0.3", markersize=3, linewidth=0.8)
    k = result.eigengap
    ax.axvline(k + 0.5, color="tab:red", linewidth=1.0, linestyle="--")
    ax.annotate(
        f"eigengap: k = {k}",
        (k + 0.5, float(values[min(k, count - 1)])),
        xytext=(4, -2),
        textcoords="offset points",
        fontsize=7,
        color="tab:red",
    )
    ax.set_xlabel("index", fontsize=7)
    ax.set_ylabel("eigenvalue", fontsize=7)
    ax.tick_params(labelsize=6)
    name = result.class_name or (str(result.cls) if result.cls is not None else "")
    ax.set_title(
        f"SpRAy{' · ' + result.method if result.method else ''}"
        f"{' · class ' + name if name else ''} · {len(result.clusters)} clusters",
        fontsize=8,
    )


def plot_spray(result: SprayResult, images: Tensor | Mapping[int, Tensor] | None = None) -> Figure:
    """SpRAy's result: the Laplacian's spectrum with the eigengap marked, then one row per
    cluster — its mean map (with size, accuracy and confidence, and whether it differs
    from the rest of the class) and its representatives' maps; with ``images``, a row
    of the representatives' images under each.

    Parameters
    ----------
    result : SprayResult
        :func:`seethrough.scale.spray` or :func:`~seethrough.scale.spray_run`.
    images : Tensor or mapping, optional
        Pixels in [0, 1], ``(N, C, H, W)`` indexed by the result's row identifiers, or a
        mapping row → ``(C, H, W)``.

    Raises
    ------
    InvalidInputError
        Not a SpRAy result, or ``images`` lacks a representative's row.
    """
    clusters = getattr(result, "clusters", None)
    if clusters is None or not hasattr(result, "eigenvalues"):
        raise InvalidInputError(f"plot_spray needs a SprayResult, got {type(result).__name__}")
    columns = 1 + max((len(c.representatives) for c in clusters), default=0)
    per_cluster = 2 if images is not None else 1
    rows = 1 + per_cluster * len(clusters)
    figure = Figure(figsize=(1.25 * columns + 0.6, 2.0 + 1.25 * (rows - 1)), layout="constrained")
    FigureCanvasAgg(figure)
    grid = figure.add_gridspec(rows, columns, height_ratios=[1.6] + [1.0] * (rows - 1))
    _spectrum(figure.add_subplot(grid[0, :]), result)
    for i, cluster in enumerate(clusters):
        top = 1 + per_cluster * i
        ax = figure.add_subplot(grid[top, 0])
        _show_map(ax, cluster.mean_map)
        ax.set_ylabel(_cluster_label(cluster), fontsize=6, rotation=0, ha="right", va="center")
        if i == 0:
            ax.set_title("mean map", fontsize=7)
        for j, row in enumerate(cluster.representatives):
            ax = figure.add_subplot(grid[top, 1 + j])
            _show_map(ax, cluster.representative_maps[j])
            ax.set_title(f"row {row}", fontsize=6)
            if images is not None:
                below = figure.add_subplot(grid[top + 1, 1 + j])
                pixels = _pixels(images, row)
                below.imshow(pixels, cmap="gray" if pixels.ndim == 2 else None, vmin=0, vmax=1)
                _blank(below)
    return figure


def plot_class_maps(class_maps: ClassMaps, columns: int = 5) -> Figure:
    """Each class's mean map, titled with its name, image count and concentration (the
    mean share of ``|map|`` in the top 10 % of pixels, with its interval).

    Raises
    ------
    InvalidInputError
        Not a ClassMaps result.
    """
    if not hasattr(class_maps, "mean_maps") or not hasattr(class_maps, "classes"):
        raise InvalidInputError(f"plot_class_maps needs ClassMaps, got {type(class_maps).__name__}")
    count = len(class_maps.classes)
    columns = max(1, min(columns, count))
    rows = -(-count // columns)
    figure = Figure(figsize=(1.9 * columns, 2.1 * rows + 0.4), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(rows, columns, squeeze=False)
    for i in range(rows * columns):
        ax = axes[i // columns][i % columns]
        if i >= count:
            ax.set_axis_off()
            continue
        _show_map(ax, class_maps.mean_maps[i])
        name = (
            class_maps.names[i]
            if class_maps.names is not None
            else f"class {class_maps.classes[i]}"
        )
        title = f"{name}\n{class_maps.counts[i]} images"
        interval = class_maps.concentration[i]
        if interval is not None:
            top = float(class_maps.settings.get("top", 0.1))
            title += f"\ntop-{top:.0%} share {interval.format()}"
        ax.set_title(title, fontsize=7)
    method = f" ({class_maps.method})" if class_maps.method else ""
    figure.suptitle(f"mean maps per class{method}", fontsize=8)
    return figure

"""Figures of decompositions: concept relevance (which channels carry a prediction's
relevance, and where) and class circuits.

The results hold raw relevance; every display choice is made here and said on the figure.
Conditional heatmaps are signed (red: relevance for the target, blue: against) and drawn
over the image; the maps of one row's channels share one colour scale, so a channel that
carries little relevance looks faint next to one that carries much, and the map of all
channels together has its own scale. Each scale is the 99.5th percentile of the absolute
values it covers, printed on the figure.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..errors import InvalidOptionError
from .heatmap import display_images, overlay

if TYPE_CHECKING:
    from ..decompose.concepts import ConceptRelevance

__all__ = ["plot_circuit", "plot_circuit_overlap", "plot_concepts"]

_FONT = 7
_CELL = 1.5  # inches per tile
_PERCENTILE = 99.5


def _rows(chosen: Sequence[int] | None, available: int, limit: int) -> list[int]:
    """Rows to show: the given ones (validated) or the first ``limit``."""
    if chosen is None:
        return list(range(min(available, limit)))
    rows = list(chosen)
    bad = [
        r for r in rows if isinstance(r, bool) or not isinstance(r, int) or not 0 <= r < available
    ]
    if not rows or bad:
        raise InvalidOptionError(
            f"rows must be a non-empty list of row indices 0 to {available - 1}, got {rows!r}"
        )
    return rows


def _scale(values: torch.Tensor) -> float:
    """The display scale: the 99.5th percentile of ``|values|`` (its max if that is 0;
    1 for an all-zero map)."""
    flat = values.detach().abs().flatten().float().cpu()
    scale = float(torch.quantile(flat, _PERCENTILE / 100)) if flat.numel() else 0.0
    scale = scale if scale > 0 else float(flat.max()) if flat.numel() else 0.0
    return scale if scale > 0 else 1.0


def _class(result: ConceptRelevance, row: int) -> str:
    target = int(result.targets[row])
    names = result.class_names
    if target < 0:
        return "target score"
    return names[target] if names is not None and target < len(names) else f"class {target}"


def plot_concepts(
    result: ConceptRelevance,
    *,
    rows: Sequence[int] | None = None,
    transform: Any = None,
    limit: int = 4,
) -> Figure:
    """Rows: explained images; columns: the image, the relevance of all channels of the
    layer on it, then each top channel's conditional heatmap (CRP; Achtibat et al., 2023),
    titled with the channel id, its relevance and its share of the absolute relevance.

    Parameters
    ----------
    result : ConceptRelevance
        From :func:`seethrough.decompose.concepts`.
    rows : sequence of int, optional
        Which rows of ``result`` (default: the first ``limit``).
    transform : optional
        The model's preprocessing (its ``invert`` shows pixels); default: the result's.
    limit : int
        Most rows shown by default.

    Returns
    -------
    matplotlib.figure.Figure
    """
    chosen = _rows(rows, len(result.scores), limit)
    images = display_images(result.inputs[chosen], transform or result.input_transform)
    top = result.top
    figure = Figure(figsize=(_CELL * (top + 2) + 0.3, _CELL * len(chosen) + 0.9))
    figure.set_layout_engine("constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(chosen), top + 2, squeeze=False)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    for r, row in enumerate(chosen):
        image = images[r]
        axes[r][0].imshow(image)
        axes[r][0].set_ylabel(
            f"image {int(result.image_index[row])}\n{_class(result, row)}", fontsize=_FONT
        )
        total = _scale(result.heatmap[row])
        whole = (result.heatmap[row] / total).clamp(-1, 1).float().cpu().numpy()
        axes[r][1].imshow(np.clip(overlay(image, whole, "signed"), 0, 1))
        axes[r][1].set_title(
            f"all channels\n{float(result.total_relevance[row]):.3g}  ±{total:.3g}",
            fontsize=_FONT,
        )
        shared = _scale(result.heatmaps[row])
        for k in range(top):
            ax = axes[r][k + 2]
            scaled = (result.heatmaps[row, k] / shared).clamp(-1, 1).float().cpu().numpy()
            ax.imshow(np.clip(overlay(image, scaled, "signed"), 0, 1))
            ax.set_title(
                f"ch {int(result.top_channels[row, k])}\n"
                f"{float(result.top_relevance[row, k]):.3g} "
                f"({float(result.top_share[row, k]):.0%})",
                fontsize=_FONT,
            )
        axes[r][-1].yaxis.set_label_position("right")
        axes[r][-1].set_ylabel(f"±{shared:.3g}", fontsize=_FONT)
    figure.suptitle(
        f"{result.layer} — concept relevance ({result.composite}): the top {top} of "
        f"{result.layer_channels} channels by {result.rank} relevance (title: channel, its "
        "relevance and share of the absolute relevance); red for, blue against the target; "
        "one colour scale per row for the channels (right), its own for all channels",
        fontsize=_FONT + 1,
        wrap=True,
    )
    return figure


# ------------------------------------------------------------------ class circuits


def plot_circuit(result: Any) -> Figure:
    """A class circuit (:func:`seethrough.decompose.circuit`): the greedy search's kept
    fraction (and its lower confidence bound) as channels are added, with the target
    ``keep``; which channels of each layer are kept; and class accuracy and precision of
    the full network against the circuit on the search and held-out images.

    Parameters
    ----------
    result : Circuit
        From :func:`seethrough.decompose.circuit`.

    Returns
    -------
    matplotlib.figure.Figure
    """
    figure = Figure(figsize=(12, 3.6))
    figure.set_layout_engine("constrained")
    FigureCanvasAgg(figure)
    curve_ax, channel_ax, score_ax = figure.subplots(1, 3, width_ratios=[1.2, 1.3, 1.0])
    steps = np.arange(len(result.curve))
    curve_ax.plot(steps, result.curve, "o-", ms=3, color="#2166ac", label="kept fraction")
    curve_ax.plot(
        steps,
        result.curve_lower,
        "s--",
        ms=3,
        color="#92c5de",
        label=f"lower bound ({result.confidence:.0%})",
    )
    curve_ax.axhline(result.keep, color="#b2182b", lw=1, label=f"keep {result.keep:.0%}")
    curve_ax.set_xlabel("channels added (greedy)")
    curve_ax.set_ylabel(
        "kept fraction (validation images)"
        if result.validation
        else "kept fraction (search images)"
    )
    curve_ax.set_ylim(0, 1.05)
    curve_ax.legend(fontsize=_FONT, loc="lower right")
    curve_ax.set_title(
        f"{len(result.order)} added, {len(result.dropped)} dropped, "
        f"{len(result.swapped_in)} exchanged in: {result.size} kept",
        fontsize=_FONT + 1,
    )
    _plot_kept_channels(channel_ax, result)
    _plot_scores(score_ax, result)
    figure.suptitle(
        f"circuit of {result.class_name}: {result.size} of {result.total} channels, the others "
        f"{'mean-ablated' if result.ablation == 'mean' else 'set to zero'}",
        fontsize=_FONT + 2,
    )
    return figure


def _plot_kept_channels(ax: Any, result: Any) -> None:
    width = max(result.layer_channels.values())
    grid = np.full((len(result.layers), width), np.nan)
    for row, layer in enumerate(result.layers):
        grid[row, : result.layer_channels[layer]] = 0.0
        grid[row, list(result.channels[layer])] = 1.0
    ax.imshow(grid, aspect="auto", cmap="Greys", vmin=-0.3, vmax=1.0, interpolation="nearest")
    ax.set_yticks(
        range(len(result.layers)),
        [
            f"{layer} ({len(result.channels[layer])}/{result.layer_channels[layer]})"
            for layer in result.layers
        ],
        fontsize=_FONT,
    )
    ax.set_xlabel("channel")
    ax.set_title("kept channels (black; grey: ablated)", fontsize=_FONT + 1)


def _plot_scores(ax: Any, result: Any) -> None:
    sets = [("search", result.search)]
    if result.held_out is not None:
        sets.append(("held-out", result.held_out))
    labels, full, circuit = [], [], []
    for name, score in sets:
        labels += [f"{name}\naccuracy", f"{name}\nprecision"]
        full += [score.class_accuracy_full, score.precision_full]
        circuit += [score.class_accuracy, score.precision]
    x = np.arange(len(labels))
    ax.bar(x - 0.2, full, 0.4, color="#bababa", label="all channels")
    ax.bar(x + 0.2, circuit, 0.4, color="#2166ac", label="circuit")
    ax.set_xticks(x, labels, fontsize=_FONT)
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=_FONT, loc="lower right")
    kept = ", ".join(f"{name} {score.kept:.1%}" for name, score in sets)
    ax.set_title(f"{result.class_name}: kept {kept}", fontsize=_FONT + 1)


def plot_circuit_overlap(result: Any) -> Figure:
    """The class × class Jaccard matrix of circuits
    (:func:`seethrough.decompose.circuit_overlap`), each cell printed.

    Parameters
    ----------
    result : CircuitOverlap

    Returns
    -------
    matplotlib.figure.Figure
    """
    k = len(result.classes)
    side = 1.2 + 0.55 * k
    figure = Figure(figsize=(side + 1.2, side))
    figure.set_layout_engine("constrained")
    FigureCanvasAgg(figure)
    ax = figure.subplots()
    matrix = result.jaccard.double().cpu().numpy()
    shown = ax.imshow(matrix, cmap="viridis", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(k), result.classes, rotation=45, ha="right", fontsize=_FONT)
    ax.set_yticks(range(k), result.classes, fontsize=_FONT)
    for i in range(k):
        for j in range(k):
            ax.text(
                j,
                i,
                f"{matrix[i, j]:.2f}",
                ha="center",
                va="center",
                fontsize=_FONT - 1,
                color="black" if matrix[i, j] > 0.6 else "white",
            )
    figure.colorbar(shown, ax=ax, label="Jaccard index")
    ax.set_title(f"circuit overlap at {', '.join(result.layers)}", fontsize=_FONT + 1)
    return figure

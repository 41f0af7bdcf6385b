"""Figures: one row per explained image, a column for the input and one per method."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..errors import InvalidOptionError
from .heatmap import display_images, heat_values, overlay, scale_for_display

if TYPE_CHECKING:
    from ..attribution.explanation import Explanation

__all__ = ["plot", "save_figure"]


def _check_same_rows(explanations: Sequence[Explanation]) -> None:
    if not explanations:
        raise InvalidOptionError("nothing to plot: give at least one explanation")
    first = explanations[0]
    for other in explanations[1:]:
        if other.inputs.shape != first.inputs.shape or not other.targets.equal(first.targets):
            raise InvalidOptionError(
                f"{other.method} explains different rows than {first.method}; plot explanations "
                "of the same inputs and targets together"
            )


def plot(
    explanations: Sequence[Explanation],
    *,
    rows: Sequence[int] | None = None,
    percentile: float = 99.5,
    alpha: float = 0.7,
    cell_inches: float = 2.4,
) -> Figure:
    """A grid figure: the input, then each method's heatmap overlay, for each row.

    Parameters
    ----------
    explanations : sequence of Explanation
        Explanations of the same inputs and targets (e.g. one per method).
    rows : sequence of int, optional
        Which rows to show (default all).
    percentile : float
        Each map is scaled by this percentile of its absolute values for display.
    alpha : float
        Maximum opacity of the heatmap over the image.
    cell_inches : float
        Size of one panel.

    Returns
    -------
    matplotlib.figure.Figure
        Not attached to pyplot; save it with :func:`save_figure`.
    """
    _check_same_rows(explanations)
    first = explanations[0]
    chosen = list(range(len(first))) if rows is None else list(rows)
    images = display_images(first.inputs[chosen], first.input_transform)
    size = tuple(first.inputs.shape[2:])
    columns = 1 + len(explanations)
    figure = Figure(figsize=(cell_inches * columns, cell_inches * len(chosen) + 0.4))
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(chosen), columns, squeeze=False)
    names = first.target_names()
    for r, row in enumerate(chosen):
        axes[r][0].imshow(images[r])
        axes[r][0].set_title(f"{names[row]}\nscore {float(first.scores[row]):.3g}", fontsize=8)
    for c, ex in enumerate(explanations, start=1):
        values = heat_values(ex.attributions[chosen], ex.display, size)  # type: ignore[arg-type]
        scaled, scales = scale_for_display(values, percentile)
        for r in range(len(chosen)):
            axes[r][c].imshow(overlay(images[r], scaled[r].numpy(), ex.display, alpha).clip(0, 1))
            sign = "±" if ex.display == "signed" else ""
            axes[r][c].set_title(f"{ex.method}\n{sign}{float(scales[r]):.2g} = full colour",
                                 fontsize=8)
    for ax in axes.flat:
        ax.set_axis_off()
    figure.tight_layout()
    return figure


def save_figure(figure: Figure, path: str | os.PathLike[str], dpi: int = 100) -> Path:
    """Write ``figure`` as a PNG file; returns the path."""
    target = Path(path)
    figure.savefig(target, format="png", dpi=dpi)
    return target

"""Figures: for each explained row, the input and one heatmap per method, with colour bars."""

from __future__ import annotations

import math
import os
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from ..attribution.explanation import Explanation
from ..errors import InvalidOptionError
from .heatmap import DIVERGING, SEQUENTIAL, display_images, heat_values, scale_for_display

__all__ = ["plot", "save_figure"]

_TITLE_WIDTH = 30  # characters per title line
_FONT = 9


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


def _wrap(*lines: str) -> str:
    return "\n".join(textwrap.fill(line, _TITLE_WIDTH) for line in lines)


def _describe(ex: Explanation) -> str:
    """Second title line: how the map was reduced to one value per pixel."""
    how = "signed, Σ over channels" if ex.display == "signed" else "magnitude, Σ|·| over channels"
    layer = getattr(ex, "layer", None)
    if ex.resolution == "layer" and layer:
        h, w = ex.attributions.shape[2:]
        how = f"{ex.display}, layer {layer} ({h}×{w}, upsampled)"
    return how


def _panel(
    ax: Axes,
    figure: Figure,
    values: np.ndarray,
    *,
    gray: np.ndarray,
    scale: float,
    display: str,
    context: float,
) -> None:
    """One heatmap in raw units, a faint grey copy of the input under it, and its colour bar."""
    signed = display == "signed"
    norm = Normalize(vmin=-scale if signed else 0.0, vmax=scale)
    cmap = colormaps[DIVERGING if signed else SEQUENTIAL]
    rgb = cmap(norm(values))[..., :3]  # Normalize does not clip; the colormap clamps to its ends
    ax.imshow((1 - context) * rgb + context * gray[..., None])
    clipped_low = signed and bool((values < -scale).any())
    clipped_high = bool((values > scale).any())
    extend = {(True, True): "both", (True, False): "min", (False, True): "max"}.get(
        (clipped_low, clipped_high), "neither"
    )
    ticks = [-scale, 0.0, scale] if signed else [0.0, scale]
    bar = figure.colorbar(
        ScalarMappable(norm, cmap), ax=ax, fraction=0.046, pad=0.03, ticks=ticks, extend=extend
    )
    bar.ax.set_yticklabels([f"{t:.2g}" for t in ticks])
    bar.ax.tick_params(labelsize=_FONT - 1)


def plot(
    explanations: Explanation | Sequence[Explanation],
    *,
    rows: Sequence[int] | None = None,
    percentile: float = 99.5,
    columns: int = 5,
    context: float = 0.2,
    cell_inches: float = 2.6,
) -> Figure:
    """A figure: the input, then each method's heatmap with a colour bar, for each row.

    Signed maps use a diverging colormap centred at zero (red positive, blue negative);
    magnitude maps a sequential one (brighter is larger). Colour bars are in the
    method's raw units: each map's colour range is the ``percentile`` of its absolute
    values, and values beyond it are clipped (the bar's arrow shows which side).

    Parameters
    ----------
    explanations : Explanation or sequence of Explanation
        One explanation, or several of the same inputs and targets (e.g. one per method).
    rows : sequence of int, optional
        Which rows to show (default all).
    percentile : float
        Colour range of each map, as a percentile of its absolute values.
    columns : int
        Panels per figure line; a row's panels wrap onto further lines.
    context : float
        Weight in [0, 1) of a grey copy of the input blended under each heatmap.
    cell_inches : float
        Width of one panel.

    Returns
    -------
    matplotlib.figure.Figure
        Not attached to pyplot; save it with :func:`save_figure`.
    """
    if isinstance(explanations, Explanation):
        explanations = [explanations]
    _check_plot_options(explanations, context, columns)
    first = explanations[0]
    chosen = list(range(len(first))) if rows is None else list(rows)
    if not chosen:
        raise InvalidOptionError("nothing to plot: rows is empty")
    images = display_images(first.inputs[chosen], first.input_transform)
    grid = _Grid.empty(len(chosen), 1 + len(explanations), columns, cell_inches)
    _draw_inputs(grid, first, chosen, images)
    grays = images @ np.array([0.299, 0.587, 0.114])
    for p, ex in enumerate(explanations, start=1):
        _draw_method(grid, p, ex, chosen, grays, percentile, context)
    grid.figure.supxlabel(
        f"Colour range of each map: up to the {percentile:g}th percentile of |values| (beyond: "
        "clipped, arrow on the bar). Signed: red = for the target, blue = against. "
        "Magnitude: brighter = larger.",
        fontsize=_FONT - 1,
        wrap=True,
    )
    return grid.figure


def _check_plot_options(explanations: Sequence[Explanation], context: float, columns: int) -> None:
    _check_same_rows(explanations)
    if not 0 <= context < 1:
        raise InvalidOptionError(f"context must be in [0, 1), got {context!r}")
    if isinstance(columns, bool) or not isinstance(columns, int) or columns < 2:
        raise InvalidOptionError(f"columns must be an integer ≥ 2, got {columns!r}")


@dataclass(frozen=True)
class _Grid:
    """A figure of panels: each explained row's panels wrap onto ``lines`` of ``width``."""

    figure: Figure
    axes: np.ndarray
    lines: int
    width: int

    @classmethod
    def empty(cls, rows: int, panels: int, columns: int, cell_inches: float) -> _Grid:
        """An empty figure for ``rows`` rows of ``panels`` panels, at most ``columns`` a line."""
        width = min(columns, panels)
        lines = math.ceil(panels / width)
        figure = Figure(
            figsize=(cell_inches * width, (cell_inches + 0.35) * lines * rows + 0.3),
            layout="constrained",
        )
        FigureCanvasAgg(figure)
        axes = figure.subplots(lines * rows, width, squeeze=False)
        for ax in axes.flat:
            ax.set_axis_off()
        return cls(figure, axes, lines, width)

    def at(self, row: int, panel: int) -> Axes:
        """The axes of a row's panel."""
        return self.axes[row * self.lines + panel // self.width][panel % self.width]


def _draw_inputs(grid: _Grid, ex: Explanation, chosen: list[int], images: np.ndarray) -> None:
    """The first panel of each row: the input, its target and score."""
    names = ex.target_names()
    for r, row in enumerate(chosen):
        ax = grid.at(r, 0)
        ax.imshow(images[r])
        score = f"score {float(ex.scores[row]):.3g}"
        ax.set_title(_wrap("input", f"target {names[row]}", score), fontsize=_FONT)


def _draw_method(
    grid: _Grid,
    panel: int,
    ex: Explanation,
    chosen: list[int],
    grays: np.ndarray,
    percentile: float,
    context: float,
) -> None:
    """One method's heatmap in each row, at ``panel``, each with its own colour range."""
    size = tuple(ex.inputs.shape[2:])
    values = heat_values(ex.attributions[chosen], ex.display, size)  # type: ignore[arg-type]
    _, scales = scale_for_display(values, percentile)
    for r in range(len(chosen)):
        ax = grid.at(r, panel)
        _panel(
            ax,
            grid.figure,
            values[r].numpy(),
            gray=grays[r],
            scale=float(scales[r]),
            display=ex.display,
            context=context,
        )
        ax.set_title(_wrap(ex.method, _describe(ex)), fontsize=_FONT)


def save_figure(figure: Figure, path: str | os.PathLike[str], dpi: int = 110) -> Path:
    """Write ``figure`` as a PNG file; returns the path."""
    target = Path(path)
    figure.savefig(target, format="png", dpi=dpi)
    return target

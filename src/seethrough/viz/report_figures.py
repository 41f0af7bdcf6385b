"""Small figures for the one-file report: one map with its colour bar, an input picture,
and line charts (randomization and faithfulness curves), as compact PNG bytes.

The report inlines every picture in its HTML page, so each is kept small: a 256-colour
palette PNG (:func:`png_bytes`), at a modest resolution. The map panels draw the same
heatmap as :func:`seethrough.viz.plot` (raw units, a colour range set by a high
percentile of the map's absolute values, values beyond it clipped), and return that
range so the report can print it next to the picture.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from ..attribution.explanation import Explanation
from ..errors import InvalidOptionError
from .grid import _panel
from .heatmap import display_images, heat_values, scale_for_display

__all__ = ["Curve", "input_png", "map_panel", "plot_curves", "png_bytes"]

_FONT = 8
_BAR_FONT = 10
"""Points of a map panel's colour-bar labels (about 12 px at :data:`_DPI`; the page may
show a panel a little smaller than its pixel size)."""
_DPI = 90

Curve = tuple[Sequence[float], Sequence[float]]
"""``(x values, y values)`` of one line."""


def png_bytes(figure: Figure, dpi: int = _DPI, colours: int = 256) -> bytes:
    """``figure`` as PNG bytes, quantised to a palette of ``colours`` (smaller files)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return _quantised(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"), colours)


def _quantised(image: Image.Image, colours: int) -> bytes:
    out = io.BytesIO()
    image.quantize(colours, method=Image.Quantize.MEDIANCUT).save(out, format="PNG", optimize=True)
    return out.getvalue()


def input_png(explanation: Explanation, row: int, colours: int = 256) -> bytes:
    """The input of ``row`` as the model saw it (preprocessing undone), as PNG bytes."""
    picture = display_images(explanation.inputs[row : row + 1], explanation.input_transform)[0]
    image = Image.fromarray((picture * 255).round().astype(np.uint8))
    return _quantised(image, colours)


def map_panel(
    explanation: Explanation,
    row: int,
    *,
    percentile: float = 99.5,
    context: float = 0.2,
    inches: float = 2.3,
    dpi: int = _DPI,
) -> tuple[bytes, tuple[float, float]]:
    """One row's heatmap in raw units with its colour bar, as PNG bytes, and its colour
    range ``(low, high)``: ``(-s, s)`` for signed maps, ``(0, s)`` for magnitude maps,
    ``s`` the ``percentile`` of the map's absolute values (as :func:`seethrough.viz.plot`).
    """
    if not 0 <= row < len(explanation):
        raise InvalidOptionError(f"row must be in 0..{len(explanation) - 1}, got {row}")
    size = tuple(explanation.inputs.shape[2:])
    values = heat_values(explanation.attributions[row : row + 1], explanation.display, size)  # type: ignore[arg-type]
    _, scales = scale_for_display(values, percentile)
    scale = float(scales[0])
    image = display_images(explanation.inputs[row : row + 1], explanation.input_transform)[0]
    gray = image @ np.array([0.299, 0.587, 0.114])
    figure = Figure(figsize=(inches * 1.2, inches), layout="constrained")
    FigureCanvasAgg(figure)
    ax = figure.subplots()
    ax.set_axis_off()
    _panel(
        ax,
        figure,
        values[0].numpy(),
        gray=gray,
        scale=scale,
        display=explanation.display,
        context=context,
    )
    figure.axes[-1].tick_params(labelsize=_BAR_FONT)  # the colour bar: legible at page size
    signed = explanation.display == "signed"
    return png_bytes(figure, dpi), ((-scale if signed else 0.0), scale)


def plot_curves(
    curves: Mapping[str, Curve],
    *,
    xlabel: str,
    ylabel: str,
    title: str,
    xticks: Sequence[str] | None = None,
    threshold: float | None = None,
    dashed: Sequence[str] = (),
) -> Figure:
    """One line per entry of ``curves`` (label → (x, y)); ``xticks`` names the x
    positions ``0, 1, …`` (e.g. randomization steps); ``threshold`` draws a horizontal
    reference line; the labels in ``dashed`` (controls) are drawn dashed."""
    if not curves:
        raise InvalidOptionError("no curves to plot")
    figure = Figure(figsize=(6.0, 3.6), layout="constrained")
    FigureCanvasAgg(figure)
    ax = figure.subplots()
    for label, (x, y) in curves.items():
        style = "--" if label in dashed else "-"
        ax.plot(list(x), list(y), style, marker="o", markersize=2.5, linewidth=1.2, label=label)
    if threshold is not None:
        ax.axhline(threshold, color="0.4", linewidth=0.8, linestyle=":")
    if xticks is not None:
        ax.set_xticks(range(len(xticks)), list(xticks), rotation=35, ha="right")
    ax.set_xlabel(xlabel, fontsize=_FONT + 1)
    ax.set_ylabel(ylabel, fontsize=_FONT + 1)
    ax.set_title(title, fontsize=_FONT + 2)
    ax.tick_params(labelsize=_FONT)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=_FONT, frameon=False)
    return figure

"""Heatmaps, overlays and grids. All display normalisation happens here."""

from .grid import plot, save_figure
from .heatmap import colorize, display_images, heat_values, overlay, scale_for_display
from .sanity import plot_randomization_grid, plot_similarity_curves

__all__ = [
    "colorize",
    "display_images",
    "heat_values",
    "overlay",
    "plot",
    "plot_randomization_grid",
    "plot_similarity_curves",
    "save_figure",
    "scale_for_display",
]

"""Heatmaps, overlays and grids. All display normalisation happens here."""

from .anatomy import plot_anatomy, plot_card
from .grid import plot, save_figure
from .heatmap import colorize, display_images, heat_values, overlay, scale_for_display
from .inside import (
    plot_dream,
    plot_feature_maps,
    plot_filters,
    plot_inversion,
    plot_top_examples,
    plot_traces,
    plot_visualization,
)
from .sanity import plot_randomization_grid, plot_similarity_curves

__all__ = [
    "colorize",
    "display_images",
    "heat_values",
    "overlay",
    "plot",
    "plot_anatomy",
    "plot_card",
    "plot_dream",
    "plot_feature_maps",
    "plot_filters",
    "plot_inversion",
    "plot_randomization_grid",
    "plot_similarity_curves",
    "plot_top_examples",
    "plot_traces",
    "plot_visualization",
    "save_figure",
    "scale_for_display",
]

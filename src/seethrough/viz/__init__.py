"""Heatmaps, overlays and grids. All display normalisation happens here."""

from .anatomy import plot_anatomy, plot_card
from .concept_links import plot_concept_links
from .decompose import plot_circuit, plot_circuit_overlap, plot_concepts
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
from .robust import (
    perturbation_display,
    plot_adversarial,
    plot_alignment,
    plot_class_images,
    plot_comparison,
    plot_fragility,
    plot_robust_accuracy,
)
from .sanity import plot_randomization_grid, plot_similarity_curves
from .strategies import plot_class_maps, plot_spray

__all__ = [
    "colorize",
    "display_images",
    "heat_values",
    "overlay",
    "perturbation_display",
    "plot",
    "plot_adversarial",
    "plot_alignment",
    "plot_anatomy",
    "plot_card",
    "plot_circuit",
    "plot_circuit_overlap",
    "plot_class_images",
    "plot_class_maps",
    "plot_comparison",
    "plot_concept_links",
    "plot_concepts",
    "plot_dream",
    "plot_feature_maps",
    "plot_filters",
    "plot_fragility",
    "plot_inversion",
    "plot_randomization_grid",
    "plot_robust_accuracy",
    "plot_similarity_curves",
    "plot_spray",
    "plot_top_examples",
    "plot_traces",
    "plot_visualization",
    "save_figure",
    "scale_for_display",
]

"""Can this explanation be trusted? Sanity checks, similarity measures, faithfulness.

Importing this package registers the control explainers ``edge_detector`` and
``random_noise`` (:mod:`seethrough.trust.controls`).
"""

from .controls import EdgeDetector, RandomNoise, sobel_edges
from .randomize import INITS, randomize_step
from .sanity import (
    METRICS,
    MODES,
    ComparisonResult,
    RandomizationResult,
    Similarities,
    data_randomization,
    edge_similarity,
    edge_similarity_of,
    model_randomization,
)
from .similarity import constant_maps, hog_similarity, reduce_maps, spearman, ssim
from .steps import GRANULARITIES, RandomizationStep, randomization_steps

__all__ = [
    "GRANULARITIES",
    "INITS",
    "METRICS",
    "MODES",
    "ComparisonResult",
    "EdgeDetector",
    "RandomNoise",
    "RandomizationResult",
    "RandomizationStep",
    "Similarities",
    "constant_maps",
    "data_randomization",
    "edge_similarity",
    "edge_similarity_of",
    "hog_similarity",
    "model_randomization",
    "randomization_steps",
    "randomize_step",
    "reduce_maps",
    "sobel_edges",
    "spearman",
    "ssim",
]
